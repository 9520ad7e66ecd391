#!/usr/bin/python3
"""STOW-RS client for bench/stow.sh: one POST of every *.dcm under DIR as
multipart/related; type="application/dicom" to URL (a /dicom-web/studies
endpoint). Prints the seconds the request took (the body is built before
the clock starts) and exits non-zero unless every instance was stored.

  stow_client.py URL DIR
"""
import os
import sys
import time
import uuid

import requests

url, d = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(d) for f in fs if f.endswith(".dcm"))
boundary = "stow-" + uuid.uuid4().hex
parts = []
for f in files:
    with open(f, "rb") as fh:
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + fh.read() + b"\r\n")
body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
           "Accept": "application/dicom+json"}
t = time.perf_counter()
r = requests.post(url, data=body, headers=headers, timeout=600)
dt = time.perf_counter() - t
if r.status_code != 200:
    sys.exit(f"STOW-RS to {url}: {r.status_code} {r.text[:300]}")
stored = len(r.json().get("00081199", {}).get("Value", []))
if stored != len(files):
    sys.exit(f"STOW-RS to {url}: {stored} of {len(files)} stored")
print(f"{dt:.4f}")
