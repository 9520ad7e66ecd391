#!/usr/bin/python3
"""Timed Orthanc REST client for bench/ingest.sh (the anchor side).

  orthanc_client.py post  URL DIR THREADS   POST every *.dcm under DIR to URL/instances
  orthanc_client.py fetch URL OUT THREADS   GET every instance's file into OUT/<id>.dcm
  orthanc_client.py count URL               print the number of stored instances

post uses the anchors' own driver (../../shared/anchors/baselines.py,
post_instances: keep-alive requests sessions, one per thread), so the figure
is comparable with the anchors' "HTTP POST /instances, 4 client threads".
post and fetch print the seconds the transfer took, measured around the
requests only (interpreter start-up excluded). Set BASELINES_DIR to a
scratch folder: importing baselines creates its results and pids folders
there.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("ANCHORS", os.path.join(HERE, "..", "..", "shared", "anchors")))

import requests  # noqa: E402


def files_under(d):
    out = []
    for dp, _, fs in os.walk(d):
        out += [os.path.join(dp, f) for f in fs if f.endswith(".dcm")]
    return sorted(out)


def post(url, d, threads):
    import baselines as b  # the anchors' Orthanc driver
    files = files_under(d)
    t = time.perf_counter()
    b.post_instances(url, files, threads)
    print(f"{time.perf_counter() - t:.4f}")


def fetch(url, out, threads):
    s = requests.Session()
    ids = s.get(url + "/instances").json()
    os.makedirs(out, exist_ok=True)
    errors = []

    def work(chunk):
        ss = requests.Session()
        # requests asks for gzip by default and Orthanc then compresses every
        # file on the fly; a DICOM client fetching files does not.
        ss.headers["Accept-Encoding"] = "identity"
        for i in chunk:
            r = ss.get(f"{url}/instances/{i}/file")
            if not r.ok:
                errors.append(f"{i}: HTTP {r.status_code}")
                return
            with open(os.path.join(out, i + ".dcm"), "wb") as f:
                f.write(r.content)

    t = time.perf_counter()
    ts = [threading.Thread(target=work, args=(ids[k::threads],)) for k in range(threads)]
    [x.start() for x in ts]
    [x.join() for x in ts]
    dt = time.perf_counter() - t
    if errors:
        sys.exit("fetch: " + errors[0])
    print(f"{dt:.4f}")


def main():
    what, url = sys.argv[1], sys.argv[2].rstrip("/")
    if what == "post":
        post(url, sys.argv[3], int(sys.argv[4]))
    elif what == "fetch":
        fetch(url, sys.argv[3], int(sys.argv[4]))
    elif what == "count":
        print(requests.get(url + "/statistics").json()["CountInstances"])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
