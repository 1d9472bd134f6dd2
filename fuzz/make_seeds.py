#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

Usage: make_seeds.py MODEL_DIR
MODEL_DIR is a small embsum-datagen artifact, for example
  embsum-datagen --out=/tmp/m --users=4 --items=6 --dim=4 --user_codes=2 \
      --item_codes=2 --impression_size=3 --seed=1
Each seed is a valid input (the fuzzer mutates from there) plus a few near
misses that reach deeper checks.
"""
import os
import struct
import sys

import numpy as np


def write(target, name, data):
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus",
                          target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def npy_bytes(array, version):
    import io
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def main():
    model = sys.argv[1]
    # .npy: the artifact's arrays, an fp16 copy, versions 2.0 and 3.0, a
    # 0-d and an empty array, and a truncated file.
    upe = read(os.path.join(model, "users/upe.npy"))
    write("npy", "upe.npy", upe)
    write("npy", "cpe.npy", read(os.path.join(model, "items/cpe.npy")))
    arr = np.load(os.path.join(model, "users/upe.npy"))
    write("npy", "upe_f2.npy", npy_bytes(arr.astype("<f2"), (1, 0)))
    write("npy", "upe_v2.npy", npy_bytes(arr, (2, 0)))
    write("npy", "upe_v3.npy", npy_bytes(arr, (3, 0)))
    write("npy", "scalar.npy", npy_bytes(np.float32(1.5), (1, 0)))
    write("npy", "empty.npy", npy_bytes(np.zeros((0, 2, 4), "<f4"), (1, 0)))
    write("npy", "truncated.npy", upe[:-7])

    # manifest.json: the artifact's, and one without optional arrays.
    manifest = read(os.path.join(model, "manifest.json"))
    write("manifest", "manifest.json", manifest)
    write("manifest", "plain.json",
          b'{"format_version": 1, "model_version": "v", "dim": 512, '
          b'"user_codes": 32, "item_codes": 8, "user_queries": false, '
          b'"item_keys": false}')

    # ids.txt: users and items, unicode, a duplicate, no final newline.
    write("ids", "users.txt", read(os.path.join(model, "users/ids.txt")))
    write("ids", "items.txt", read(os.path.join(model, "items/ids.txt")))
    write("ids", "unicode.txt", "café\n日本\nU\u00e9\n".encode())
    write("ids", "duplicate.txt", b"a\nb\na\n")
    write("ids", "no_newline.txt", b"a\nb")

    write("summaries", "summaries.jsonl",
          read(os.path.join(model, "users/summaries.jsonl")))
    write("summaries", "blank_lines.jsonl",
          b'\n{"user_id": "a", "summary": "x \\u00e9 \\" y"}\n\n')

    # User records: 4 bytes pick (m, d, patch) as the fuzzer reads them,
    # then the record. m = 1 + b0 % 64, d = 1 + (b1 | b2 << 8) % 1024.
    for m, d, dtype, queries in ((2, 4, 0, True), (2, 4, 1, False),
                                 (1, 1, 0, False), (32, 512, 1, False)):
        prefix = bytes([m - 1, (d - 1) & 0xFF, (d - 1) >> 8, 0])
        header = struct.pack("<BBBBII", 1, dtype, 1 if queries else 0, 0, m, d)
        count = m * d * (2 if queries else 1)
        values = np.linspace(-1, 1, count).astype("<f4" if dtype == 0 else "<f2")
        write("user_record", f"m{m}_d{d}_t{dtype}_q{int(queries)}",
              prefix + header + values.tobytes())

    # Requests: byte 0 even = RankRequest, odd = RetrieveRequest.
    ids = read(os.path.join(model, "items/ids.txt")).split()
    rank = field_bytes(1, b"U1") + b"".join(field_bytes(2, i) for i in ids)
    write("request", "rank", b"\x00" + rank + field_varint(3, 3) +
          field_varint(4, 1) + field_varint(5, 1))
    write("request", "rank_empty_user", b"\x00" + field_bytes(2, ids[0]))
    write("request", "rank_long_user", b"\x00" + field_bytes(1, b"u" * 257))
    write("request", "retrieve",
          b"\x01" + field_bytes(1, b"U2") + field_varint(2, 10) +
          field_bytes(3, ids[0]) + field_varint(4, 1))
    write("request", "retrieve_k0", b"\x01" + field_bytes(1, b"U2"))
    # fuzz_request serves these from the same model (U1..U4, N1..N6):
    # duplicates and unknown ids, an unknown user, every item, ANN Retrieve
    # with exclusions, and a string that is not UTF-8 (a parse failure).
    write("request", "rank_unknown_ids",
          b"\x00" + field_bytes(1, b"U1") + field_bytes(2, ids[1]) +
          field_bytes(2, b"X9") + field_bytes(2, ids[1]) +
          field_bytes(2, b"X9") + field_bytes(2, ids[2]) + field_varint(5, 1))
    write("request", "rank_unknown_user",
          b"\x00" + field_bytes(1, b"U9") + field_bytes(2, ids[0]))
    write("request", "rank_all",
          b"\x00" + field_bytes(1, b"U3") +
          b"".join(field_bytes(2, i) for i in reversed(ids)))
    write("request", "retrieve_ann",
          b"\x01" + field_bytes(1, b"U4") + field_varint(2, 2) +
          field_bytes(3, ids[2]) + field_bytes(3, ids[2]) +
          field_bytes(3, b"X9"))
    write("request", "retrieve_all",
          b"\x01" + field_bytes(1, b"U1") + field_varint(2, 6) +
          field_varint(4, 1))
    write("request", "rank_not_utf8", b"\x00" + field_bytes(1, b"U\xff1"))


if __name__ == "__main__":
    main()
