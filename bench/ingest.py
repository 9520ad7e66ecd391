#!/usr/bin/python3
"""Ingest benchmark: dicomesh against Orthanc, side by side in one run.

Both ingest the same generated 400-slice CT (../shared/anchors/gen_study.py,
about 210 MB), durably: dicomesh syncs every block and its index before a
study counts as stored; Orthanc runs with SyncStorageArea=true, fed over HTTP
POST /instances by 4 keep-alive client threads (its fastest durable path in
the anchors). Then dicomesh exports the study back and every file is compared
with the original by SHA-256.

Needs Debian's orthanc, python3-requests, python3-pydicom, python3-numpy (the
script installs nothing; bench/README.md has the apt-get line). Every process
it starts listens on 127.0.0.1 and is stopped by its PID.

  bench/ingest.py [-n 3]
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ANCHORS = os.path.join(ROOT, "..", "shared", "anchors")
sys.path.insert(0, ANCHORS)
import baselines as b  # noqa: E402  (the anchors' own Orthanc driver)
import requests  # noqa: E402


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3, help="repetitions of each side")
    a = ap.parse_args()

    study = os.path.join(b.DATA, "ct400")
    if not os.path.exists(os.path.join(study, "manifest.json")):
        subprocess.run([b.GEN, "--preset", "ct", "--seed", "1", "--out", study], check=True)
    files = b.dcm_files(study)
    nfiles, nbytes = b.dir_stats(study)
    originals = {os.path.basename(f): sha(f) for f in files}

    work = tempfile.mkdtemp(prefix="dicomesh-bench-")
    exe = os.path.join(work, "dicomesh")
    subprocess.run(["go", "build", "-o", exe, "./cmd/dicomesh"], cwd=ROOT, check=True)

    rows = []
    try:
        # dicomesh: a fresh node per repetition, durable ingest, then export.
        ing, exp = [], []
        for i in range(a.n):
            home = os.path.join(work, f"home{i}")
            subprocess.run([exe, "--home", home, "init"], check=True, stdout=subprocess.DEVNULL)
            t = time.perf_counter()
            subprocess.run([exe, "--home", home, "ingest", study], check=True, stdout=subprocess.DEVNULL)
            ing.append(time.perf_counter() - t)
            uid = subprocess.run([exe, "--home", home, "studies", "-o", "json"], check=True,
                                 capture_output=True, text=True).stdout.split('"study_uid": "')[1].split('"')[0]
            out = os.path.join(work, f"export{i}")
            t = time.perf_counter()
            subprocess.run([exe, "--home", home, "export", uid, "--to", out], check=True, stdout=subprocess.DEVNULL)
            exp.append(time.perf_counter() - t)
            got = {}
            for dp, _, fs in os.walk(out):
                for f in fs:
                    got[f] = sha(os.path.join(dp, f))
            if sorted(got.values()) != sorted(originals.values()):
                sys.exit("export differs from the originals")
        rows.append(("dicomesh ingest (durable)", sorted(ing)[len(ing) // 2]))
        rows.append(("dicomesh export (verified)", sorted(exp)[len(exp) // 2]))

        # Orthanc: durable storage, HTTP POST /instances with 4 threads.
        url = b.start_orthanc("a", sync_storage=True)
        s = requests.Session()
        xs = []
        for _ in range(a.n):
            b.o_clear("a", s)
            t = time.perf_counter()
            b.post_instances(url, files, 4)
            xs.append(time.perf_counter() - t)
            assert b.o_count("a", s) == nfiles
        rows.append(("Orthanc POST /instances x4 (SyncStorageArea)", sorted(xs)[len(xs) // 2]))
    finally:
        b.cmd_stop(None)
        shutil.rmtree(work, ignore_errors=True)

    base = rows[2][1]
    print(f"\nCT {nfiles} instances, {nbytes / 1e6:.0f} MB, median of {a.n}")
    print(f"{'what':48} {'s':>7} {'inst/s':>8} {'MB/s':>7} {'vs Orthanc':>10}")
    for label, secs in rows:
        print(f"{label:48} {secs:7.2f} {nfiles / secs:8.0f} {nbytes / 1e6 / secs:7.0f} {base / secs:9.1f}x")


if __name__ == "__main__":
    main()
