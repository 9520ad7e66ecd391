#!/usr/bin/python3
"""Orthanc A -> B peers push through a shaped link, for bench/transfer.sh -l.

  orthanc_shaped.py STUDY_DIR SHAPE_PORT REPS

Starts the anchors' Orthanc A and B (../../shared/anchors/baselines.py),
C-STOREs STUDY_DIR into A, declares B a second time as the peer "shaped" at
http://127.0.0.1:SHAPE_PORT/ (where bench/shape forwards to B's HTTP port),
and times POST A/peers/shaped/store {"Synchronous": true} REPS times, B
emptied before each. Prints one line per repetition: the seconds the push
took. Set BASELINES_DIR to a scratch folder.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("ANCHORS", os.path.join(HERE, "..", "..", "shared", "anchors")))

import requests  # noqa: E402

import baselines as b  # noqa: E402


def main():
    study, port, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = requests.Session()
    b.stop_orthanc("a")
    b.stop_orthanc("b")
    try:
        ua, _ = b.start_orthanc("a"), b.start_orthanc("b")
        b.o_clear("a", s)
        b.sh(b.storescu("ORTHANCA", b.ORTHANC["a"]["dicom"], study), env=b.ENV_NODELAY)
        nfiles = len(b.dcm_files(study))
        sid = s.get(ua + "/studies").json()[0]
        s.put(ua + "/peers/shaped", json={"Url": f"http://127.0.0.1:{port}/"}).raise_for_status()
        for _ in range(reps):
            b.o_clear("b", s)
            t = b.now()
            r = s.post(ua + "/peers/shaped/store", json={"Resources": [sid], "Synchronous": True})
            dt = b.now() - t
            r.raise_for_status()
            got = b.o_count("b", s)
            if got != nfiles:
                raise RuntimeError(f"B has {got} instances instead of {nfiles}")
            print(f"{dt:.3f}", flush=True)
    finally:
        b.stop_orthanc("a")
        b.stop_orthanc("b")


if __name__ == "__main__":
    main()
