"""Generates python-reference.json: what CPython's json.dumps writes, to test `pyjson` against.

Run: python3 gen_python_reference.py > python-reference.json
"""
import json
import random
import struct
import sys

rng = random.Random(20251016)
floats = [0.0, -0.0, 1.0, 0.1, 0.5, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 1.5e-5, 123456789.125,
          1760623352.944572, 1760694494.6657364, 5e-324, 1.7976931348623157e308, 2.0**53, 2.0**63, 1e22, 1e21, 1e100]
for _ in range(300):
    floats.append(rng.uniform(1.7e9, 1.8e9))
for _ in range(300):
    bits = rng.getrandbits(64)
    f = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if f == f and f not in (float("inf"), float("-inf")):
        floats.append(f)
for _ in range(200):
    floats.append(rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30))

strings = ["", "plain", "Jos\u00e9 \u00c1lvarez", "\u674e\u96f7", "S\u00fcss MA6 #2 / +x", 'New ALD / Cambridge "Savannah"',
           "back\\slash", "\x00\x01\x08\x09\x0a\x0b\x0c\x0d\x1f\x7f\x80\x9f", "\u2028\u2029", "emoji \U0001F600 \U0001F52C",
           "\ufeff\uffff", "tab\tnew\nline", "</script>", "'single'"]
for _ in range(200):
    n = rng.randint(0, 12)
    s = "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0, 0x1f), rng.randint(0x80, 0x7ff),
                                 rng.randint(0x800, 0xd7ff), rng.randint(0xe000, 0xffff), rng.randint(0x10000, 0x10ffff)]))
                for _ in range(n))
    strings.append(s)

docs = [
    {"event": "x", "list": [1, 2.5, None, True, False, "\u00e9"], "nested": {"b": {"c": []}, "a": {}}},
    {"n": -12, "big": 18446744073709551615, "neg": -9223372036854775808, "f": 1e-7},
]

json.dump({
    "floats": [[struct.unpack("<Q", struct.pack("<d", f))[0], repr(f)] for f in floats],
    "strings": [[s, json.dumps(s)] for s in strings],
    "docs": [[d, json.dumps(d, sort_keys=True)] for d in docs],
}, sys.stdout, indent=1)
