"""The corpus of bad model artifacts (docs/design.md section 3) that both
validators must reject: the Python one (embsum.artifact.validate) and
`embsum-ingest --check`. tests/python/artifact_test.py checks that both
reject every case naming the file and the row listed here.

Each case starts from the same small valid artifact (write_base) and breaks
exactly one thing, so there is one right answer. A case is
    (name, mutate(model_dir), file, row)
where file is relative to the model directory (None: the directory
itself) and row is the 0-based record index (ids.txt / summaries.jsonl line
L is row L - 1), or None where the problem is not a record's.

The corpus is built by code rather than stored as binary files, so every
case is readable here and regenerated identically on every run.
"""
import json
import os

import numpy as np

from embsum.artifact import ArtifactWriter

USERS = [f"u{i}" for i in range(6)]
ITEMS = [f"i{i}" for i in range(7)]
DIM, USER_CODES, ITEM_CODES = 4, 2, 3


def write_base(model_dir, dtype="float32"):
    """A valid artifact with queries, keys and summaries."""
    rng = np.random.default_rng(7)
    with ArtifactWriter(model_dir, dim=DIM, user_codes=USER_CODES,
                        item_codes=ITEM_CODES, model_version="corpus-1",
                        user_queries=True, item_keys=True,
                        dtype=dtype) as w:
        shape = (len(USERS), USER_CODES, DIM)
        w.add_users(USERS[:3], rng.normal(size=shape)[:3],
                    queries=rng.normal(size=shape)[:3],
                    summaries=["likes jazz", None, "hikes"])
        w.add_users(USERS[3:], rng.normal(size=shape)[3:],
                    queries=rng.normal(size=shape)[3:],
                    summaries=[None, "reads history", "cooks"])
        shape = (len(ITEMS), ITEM_CODES, DIM)
        w.add_items(ITEMS, rng.normal(size=shape),
                    keys=rng.normal(size=shape))
    return model_dir


def _path(d, rel):
    return os.path.join(d, rel)


def _write(d, rel, data):
    with open(_path(d, rel), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def _read(d, rel):
    with open(_path(d, rel), "rb") as f:
        return f.read()


def _manifest(**changes):
    def mutate(d):
        m = json.loads(_read(d, "manifest.json"))
        for k, v in changes.items():
            if v is _DELETE:
                del m[k]
            else:
                m[k] = v
        _write(d, "manifest.json", json.dumps(m))
    return mutate


_DELETE = object()


def _ids_lines(rel, edit):
    def mutate(d):
        lines = _read(d, rel).split(b"\n")[:-1]
        _write(d, rel, b"\n".join(edit(lines)) + b"\n")
    return mutate


def _set_line(rel, index, value):
    def edit(lines):
        lines[index] = value
        return lines
    return _ids_lines(rel, edit)


def _value(rel, row, code, elem, value):
    """Sets one value of an array (rewritten as NumPy writes it)."""
    def mutate(d):
        a = np.load(_path(d, rel))
        a[row, code, elem] = value
        np.save(_path(d, rel), a)
    return mutate


def _resave(rel, fn):
    def mutate(d):
        np.save(_path(d, rel), fn(np.load(_path(d, rel))))
    return mutate


def _bytes(rel, fn):
    def mutate(d):
        _write(d, rel, fn(_read(d, rel)))
    return mutate


def _remove(rel):
    return lambda d: os.remove(_path(d, rel))


def _fortran(rel):
    def mutate(d):
        a = np.load(_path(d, rel))
        np.save(_path(d, rel), np.asfortranarray(a))
    return mutate


def _summaries(lines_fn):
    rel = "users/summaries.jsonl"

    def mutate(d):
        lines = _read(d, rel).decode().splitlines()
        _write(d, rel, "\n".join(lines_fn(lines)) + "\n")
    return mutate


U, I = "users", "items"
CASES = [
    # The directory and the manifest.
    ("manifest_missing", _remove("manifest.json"), "manifest.json", None),
    ("manifest_not_json", lambda d: _write(d, "manifest.json", "{\"dim\": "),
     "manifest.json", None),
    ("manifest_not_object", lambda d: _write(d, "manifest.json", "[1]"),
     "manifest.json", None),
    ("manifest_format_version_2", _manifest(format_version=2),
     "manifest.json", None),
    ("manifest_dim_missing", _manifest(dim=_DELETE), "manifest.json", None),
    ("manifest_dim_zero", _manifest(dim=0), "manifest.json", None),
    ("manifest_dim_float", _manifest(dim=4.0), "manifest.json", None),
    ("manifest_codes_too_many", _manifest(item_codes=5000), "manifest.json",
     None),
    ("manifest_queries_not_bool", _manifest(user_queries="yes"),
     "manifest.json", None),
    ("manifest_empty_model_version", _manifest(model_version=""),
     "manifest.json", None),
    ("manifest_model_version_control", _manifest(model_version="v\t1"),
     "manifest.json", None),
    # Id lists.
    ("user_ids_missing", _remove(f"{U}/ids.txt"), f"{U}/ids.txt", None),
    ("user_id_empty_line", _set_line(f"{U}/ids.txt", 2, b""),
     f"{U}/ids.txt", 2),
    ("user_id_duplicate", _set_line(f"{U}/ids.txt", 4, b"u1"),
     f"{U}/ids.txt", 4),
    ("user_id_control_char", _set_line(f"{U}/ids.txt", 1, b"u\x01"),
     f"{U}/ids.txt", 1),
    ("user_id_carriage_return", _set_line(f"{U}/ids.txt", 5, b"u5\r"),
     f"{U}/ids.txt", 5),
    ("user_id_bad_utf8", _set_line(f"{U}/ids.txt", 3, b"u\xc3\x28"),
     f"{U}/ids.txt", 3),
    ("user_id_overlong_utf8", _set_line(f"{U}/ids.txt", 0, b"\xc0\xaf"),
     f"{U}/ids.txt", 0),
    ("item_id_too_long", _set_line(f"{I}/ids.txt", 6, b"x" * 257),
     f"{I}/ids.txt", 6),
    ("item_id_duplicate", _set_line(f"{I}/ids.txt", 3, b"i0"),
     f"{I}/ids.txt", 3),
    ("item_ids_one_short", _ids_lines(f"{I}/ids.txt", lambda l: l[:-1]),
     f"{I}/cpe.npy", None),
    ("user_ids_one_more",
     _ids_lines(f"{U}/ids.txt", lambda l: l + [b"u-extra"]),
     f"{U}/upe.npy", None),
    # .npy files.
    ("upe_missing", _remove(f"{U}/upe.npy"), f"{U}/upe.npy", None),
    ("upe_float64", _resave(f"{U}/upe.npy", lambda a: a.astype("<f8")),
     f"{U}/upe.npy", None),
    ("upe_big_endian", _resave(f"{U}/upe.npy", lambda a: a.astype(">f4")),
     f"{U}/upe.npy", None),
    ("upe_fortran_order", _fortran(f"{U}/upe.npy"), f"{U}/upe.npy", None),
    ("upe_truncated", _bytes(f"{U}/upe.npy", lambda b: b[:-3]),
     f"{U}/upe.npy", None),
    ("upe_trailing_bytes", _bytes(f"{U}/upe.npy", lambda b: b + b"\0" * 4),
     f"{U}/upe.npy", None),
    ("upe_bad_magic", _bytes(f"{U}/upe.npy", lambda b: b"\x93NUMPX" + b[6:]),
     f"{U}/upe.npy", None),
    ("upe_version_9", _bytes(f"{U}/upe.npy", lambda b: b[:6] + b"\x09" +
                             b[7:]), f"{U}/upe.npy", None),
    ("upe_wrong_dim", _resave(f"{U}/upe.npy", lambda a: a[:, :, :3]),
     f"{U}/upe.npy", None),
    ("upe_2d", _resave(f"{U}/upe.npy", lambda a: a.reshape(len(USERS), -1)),
     f"{U}/upe.npy", None),
    ("queries_missing", _remove(f"{U}/queries.npy"), f"{U}/queries.npy",
     None),
    ("queries_unexpected", _manifest(user_queries=False),
     f"{U}/queries.npy", None),
    ("queries_wrong_codes", _resave(f"{U}/queries.npy", lambda a: a[:, :1]),
     f"{U}/queries.npy", None),
    ("cpe_wrong_rows", _resave(f"{I}/cpe.npy", lambda a: a[:-2]),
     f"{I}/cpe.npy", None),
    ("keys_missing", _remove(f"{I}/keys.npy"), f"{I}/keys.npy", None),
    ("keys_unexpected", _manifest(item_keys=False), f"{I}/keys.npy", None),
    ("keys_float16_wrong_shape",
     _resave(f"{I}/keys.npy", lambda a: a.astype("<f2")[:, :, :2]),
     f"{I}/keys.npy", None),
    # Summaries.
    ("summary_not_json", _summaries(lambda l: l[:1] + ["{nope"] + l[1:]),
     f"{U}/summaries.jsonl", 1),
    ("summary_missing_field",
     _summaries(lambda l: l + ['{"user_id": "u1"}']),
     f"{U}/summaries.jsonl", 4),
    ("summary_duplicate_user",
     _summaries(lambda l: l[:2] + [l[0]] + l[2:]),
     f"{U}/summaries.jsonl", 2),
    ("summary_unknown_user",
     _summaries(lambda l: l[:2] + ['{"user_id": "nobody", "summary": "x"}'] +
                l[2:]),
     f"{U}/summaries.jsonl", 2),
    # Values: NaN, Inf and beyond the bound of docs/design.md section 10.
    ("upe_nan", _value(f"{U}/upe.npy", 3, 1, 2, np.nan), f"{U}/upe.npy", 3),
    ("upe_inf", _value(f"{U}/upe.npy", 0, 0, 0, -np.inf), f"{U}/upe.npy", 0),
    ("queries_nan", _value(f"{U}/queries.npy", 4, 0, 1, np.nan),
     f"{U}/queries.npy", 4),
    ("queries_before_later_upe",  # row order across the two files
     lambda d: (_value(f"{U}/upe.npy", 5, 0, 0, np.nan)(d),
                _value(f"{U}/queries.npy", 2, 1, 3, np.inf)(d)),
     f"{U}/queries.npy", 2),
    ("upe_3e38", _value(f"{U}/upe.npy", 2, 1, 3, 3e38), f"{U}/upe.npy", 2),
    ("cpe_beyond_bound", _value(f"{I}/cpe.npy", 4, 2, 0, 1.5e6),
     f"{I}/cpe.npy", 4),
    ("keys_negative_beyond_bound", _value(f"{I}/keys.npy", 6, 0, 3, -2e6),
     f"{I}/keys.npy", 6),
    ("cpe_float16_inf",
     _resave(f"{I}/cpe.npy", lambda a: _set(a.astype("<f2"), (1, 1, 1),
                                            np.inf)),
     f"{I}/cpe.npy", 1),
    ("items_after_valid_users_nan", _value(f"{I}/keys.npy", 0, 2, 3, np.nan),
     f"{I}/keys.npy", 0),
]


def _set(a, index, value):
    a[index] = value
    return a


def build(case_dir, mutate):
    """Writes the base artifact into case_dir and applies `mutate`."""
    write_base(case_dir)
    mutate(case_dir)
    return case_dir
