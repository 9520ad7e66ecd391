#!/usr/bin/env python3
"""Writes tokens.json: patient token vectors for dicomesh/crypto.

The normalized fields below are written by hand from the rules in
crypto/token.go, and the tokens are computed here with Python's hmac module
over the documented message, independently of the Go code:

    msg   = b"dicomesh/patient-token/v1" + b"\\x00" + bytes([kind]) + field ...
    field = len(field).to_bytes(4, "big") + field      (UTF-8 bytes)

    kind 1 (id):   issuer, id
    kind 2 (demo): family, given, birth_date, sex
    kind 3 (phon): phonetic, birth_date, sex

A token is computed when all of its fields are non-empty. Run:
    python3 crypto/testdata/tokens.py > crypto/testdata/tokens.json
"""
import hashlib
import hmac
import json

KEY1 = bytes(range(32)).hex()
KEY2 = "ff" * 32

CASES = [
    dict(name="plain", key=KEY1,
         input=dict(issuer="HOSP-A", id="12345", family="Smith", given="John", birth_date="19800115", sex="M"),
         normalized=dict(issuer="HOSP-A", id="12345", family="SMITH", given="JOHN", birth_date="19800115", sex="M", phonetic="S530")),
    dict(name="other key", key=KEY2,
         input=dict(issuer="HOSP-A", id="12345", family="Smith", given="John", birth_date="19800115", sex="M"),
         normalized=dict(issuer="HOSP-A", id="12345", family="SMITH", given="JOHN", birth_date="19800115", sex="M", phonetic="S530")),
    dict(name="accents, hyphen, spaces, dash date, lower case", key=KEY1,
         input=dict(issuer=" hosp-b ", id=" A-0042 ", family="Müller-Lüdenscheidt", given="José María", birth_date="1975-02-28", sex="f"),
         normalized=dict(issuer="HOSP-B", id="A-0042", family="MULLERLUDENSCHEIDT", given="JOSEMARIA", birth_date="19750228", sex="F", phonetic="M464")),
    dict(name="sharp s, slashed o, ash, leap day", key=KEY1,
         input=dict(issuer="hosp-c", id="7", family="Strauß", given="Søren Æbelø", birth_date="20000229", sex="O"),
         normalized=dict(issuer="HOSP-C", id="7", family="STRAUSS", given="SORENAEBELO", birth_date="20000229", sex="O", phonetic="S362")),
    dict(name="apostrophe, no issuer so no id token", key=KEY1,
         input=dict(issuer="", id="999", family="O'Brien", given="Mary-Kate", birth_date="19910704", sex="female"),
         normalized=dict(issuer="", id="999", family="OBRIEN", given="MARYKATE", birth_date="19910704", sex="F", phonetic="O165")),
    dict(name="stroked l", key=KEY1,
         input=dict(issuer="urn:oid:1.2.840.99", id="PL-1", family="Łukasiewicz", given="Zbigniew", birth_date="18780121", sex="male"),
         normalized=dict(issuer="URN:OID:1.2.840.99", id="PL-1", family="LUKASIEWICZ", given="ZBIGNIEW", birth_date="18780121", sex="M", phonetic="L222")),
    dict(name="stacked diacritics", key=KEY1,
         input=dict(issuer="HOSP-D", id="vn-3", family="Nguyễn", given="Thị Ánh", birth_date="1988-12-31", sex="F"),
         normalized=dict(issuer="HOSP-D", id="vn-3", family="NGUYEN", given="THIANH", birth_date="19881231", sex="F", phonetic="N250")),
    dict(name="particle", key=KEY1,
         input=dict(issuer="HOSP-E", id="1", family="van der Berg", given="Anna", birth_date="19600101", sex="F"),
         normalized=dict(issuer="HOSP-E", id="1", family="VANDERBERG", given="ANNA", birth_date="19600101", sex="F", phonetic="V536")),
    dict(name="missing demographics", key=KEY1,
         input=dict(issuer="HOSP-A", id="MRN1", family="", given="", birth_date="", sex=""),
         normalized=dict(issuer="HOSP-A", id="MRN1", family="", given="", birth_date="", sex="", phonetic="")),
    dict(name="invalid date: february 31", key=KEY1,
         input=dict(issuer="HOSP-A", id="MRN2", family="Smith", given="John", birth_date="19990231", sex="M"),
         normalized=dict(issuer="HOSP-A", id="MRN2", family="SMITH", given="JOHN", birth_date="", sex="M", phonetic="S530")),
    dict(name="invalid date: 1900 not a leap year", key=KEY1,
         input=dict(issuer="HOSP-A", id="MRN3", family="Smith", given="John", birth_date="1900-02-29", sex="M"),
         normalized=dict(issuer="HOSP-A", id="MRN3", family="SMITH", given="JOHN", birth_date="", sex="M", phonetic="S530")),
    dict(name="invalid date: short dash form", key=KEY1,
         input=dict(issuer="", id="", family="Smith", given="John", birth_date="1999-2-3", sex="M"),
         normalized=dict(issuer="", id="", family="SMITH", given="JOHN", birth_date="", sex="M", phonetic="S530")),
    dict(name="unknown sex", key=KEY1,
         input=dict(issuer="HOSP-A", id="MRN4", family="Smith", given="John", birth_date="19800115", sex="U"),
         normalized=dict(issuer="HOSP-A", id="MRN4", family="SMITH", given="JOHN", birth_date="19800115", sex="", phonetic="S530")),
    dict(name="missing given name: phonetic only", key=KEY1,
         input=dict(issuer="", id="", family="Lee", given="", birth_date="19451108", sex="M"),
         normalized=dict(issuer="", id="", family="LEE", given="", birth_date="19451108", sex="M", phonetic="L000")),
    dict(name="field boundary AB|C", key=KEY1,
         input=dict(issuer="AB", id="C", family="AB", given="C", birth_date="19800115", sex="M"),
         normalized=dict(issuer="AB", id="C", family="AB", given="C", birth_date="19800115", sex="M", phonetic="A100")),
    dict(name="field boundary A|BC", key=KEY1,
         input=dict(issuer="A", id="BC", family="A", given="BC", birth_date="19800115", sex="M"),
         normalized=dict(issuer="A", id="BC", family="A", given="BC", birth_date="19800115", sex="M", phonetic="A000")),
    dict(name="name of another script only", key=KEY1,
         input=dict(issuer="", id="", family="Παπαδόπουλος", given="Νίκος", birth_date="19700505", sex="M"),
         normalized=dict(issuer="", id="", family="", given="", birth_date="19700505", sex="M", phonetic="")),
]

KINDS = [(1, "id", ("issuer", "id")),
         (2, "demo", ("family", "given", "birth_date", "sex")),
         (3, "phon", ("phonetic", "birth_date", "sex"))]


def token(key, kind, fields):
    msg = b"dicomesh/patient-token/v1\x00" + bytes([kind])
    for f in fields:
        b = f.encode("utf-8")
        msg += len(b).to_bytes(4, "big") + b
    return hmac.new(bytes.fromhex(key), msg, hashlib.sha256).hexdigest()


for c in CASES:
    n = c["normalized"]
    c["tokens"] = [name + ":" + token(c["key"], kind, [n[f] for f in fields])
                   for kind, name, fields in KINDS if all(n[f] for f in fields)]

FORMAT = ('HMAC-SHA-256(key, "dicomesh/patient-token/v1" || 0x00 || kind || field...), '
          'field = uint32 big-endian length || UTF-8 bytes; kind 1 id: issuer, id; '
          'kind 2 demo: family, given, birth_date, sex; kind 3 phon: phonetic, birth_date, sex; '
          'a token is present when all its normalized fields are non-empty')

print(json.dumps({"format": FORMAT, "cases": CASES}, indent=1, ensure_ascii=False))
