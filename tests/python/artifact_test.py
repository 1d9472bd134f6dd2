"""embsum.artifact: the streaming writer, its atomic publishing, and the
validator against embsum-ingest on one corpus of bad artifacts
(tests/artifacts/bad_artifacts.py): both reject every case naming the same
file and row, and `embsum-ingest --check` writes nothing.

Run by ctest (tests/python/CMakeLists.txt) with EMBSUM_INGEST and
EMBSUM_DATAGEN set; PYTHONPATH holds python/ and tests/artifacts/.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embsum_unittest  # noqa: E402
import embsum_procs  # noqa: E402
from embsum import artifact  # noqa: E402
from embsum.artifact import ArtifactError, ArtifactWriter  # noqa: E402
import bad_artifacts  # noqa: E402

KNOWN_FILES = {"manifest.json", "users/ids.txt", "users/upe.npy",
               "users/queries.npy", "users/summaries.jsonl",
               "items/ids.txt", "items/cpe.npy", "items/keys.npy"}


def ingest_check(model_dir):
    """(returncode, file, row, message) of embsum-ingest --check."""
    p = subprocess.run([embsum_procs.INGEST, "--check",
                        f"--model_dir={model_dir}",
                        "--progress_interval_s=1000"],
                       capture_output=True, text=True, errors="replace",
                       timeout=120)
    lines = [l for l in p.stderr.splitlines()
             if l.startswith("embsum-ingest: ") and " rows done" not in l]
    message = lines[-1][len("embsum-ingest: "):] if lines else p.stderr
    file = message.split(": ", 1)[0]
    file = file if file in KNOWN_FILES else None
    row = None
    m = re.match(r"[^:]+: (line|entry|row) (\d+)", message)
    if m:
        row = int(m.group(2)) - (0 if m.group(1) == "row" else 1)
    return p.returncode, file, row, message


def tree(path):
    """Every path under `path` with its size, to show nothing changed."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


class CorpusTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="embsum-corpus-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_base_artifact_is_valid_for_both(self):
        d = bad_artifacts.write_base(os.path.join(self.tmp, "base"))
        self.assertIsNone(artifact.validate(d))
        code, _, _, message = ingest_check(d)
        self.assertEqual(code, 0, message)

    def test_both_validators_reject_every_case_naming_file_and_row(self):
        names = set()
        for name, mutate, want_file, want_row in bad_artifacts.CASES:
            self.assertNotIn(name, names)
            names.add(name)
            with self.subTest(case=name):
                d = bad_artifacts.build(os.path.join(self.tmp, name), mutate)
                with self.assertRaises(ArtifactError) as ctx:
                    artifact.validate(d)
                e = ctx.exception
                self.assertEqual((e.file, e.row), (want_file, want_row),
                                 f"python: {e}")
                code, file, row, message = ingest_check(d)
                self.assertEqual(code, 1, message)
                self.assertEqual((file, row), (want_file, want_row),
                                 f"ingest: {message}")
                # The messages agree word for word, but for the OS's text
                # of a missing file (ingest adds the full path).
                if "No such file" in message:
                    self.assertTrue(str(e).startswith(want_file))
                else:
                    self.assertEqual(str(e), message)
        self.assertGreaterEqual(len(names), 40)

    def test_missing_directory(self):
        missing = os.path.join(self.tmp, "nope")
        with self.assertRaises(ArtifactError) as ctx:
            artifact.validate(missing)
        self.assertEqual((ctx.exception.file, ctx.exception.row),
                         (None, None))
        code, file, row, message = ingest_check(missing)
        self.assertEqual((code, file, row), (1, None, None), message)
        self.assertIn("not a directory", message)

    def test_check_writes_nothing(self):
        d = bad_artifacts.write_base(os.path.join(self.tmp, "m"))
        before_model, before_parent = tree(d), sorted(os.listdir(self.tmp))
        data = os.path.join(self.tmp, "data")
        p = subprocess.run([embsum_procs.INGEST, "--check",
                            f"--model_dir={d}", f"--data_dir={data}"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("nothing written", p.stderr)
        self.assertEqual(tree(d), before_model)
        self.assertEqual(sorted(os.listdir(self.tmp)), before_parent)

    def test_same_message_for_values(self):
        d = bad_artifacts.build(os.path.join(self.tmp, "v"),
                                bad_artifacts.CASES[[c[0] for c in
                                                     bad_artifacts.CASES]
                                                    .index("upe_3e38")][1])
        with self.assertRaises(ArtifactError) as ctx:
            artifact.validate(d)
        _, _, _, message = ingest_check(d)
        self.assertEqual(str(ctx.exception), message)
        self.assertIn("3e+38", message)
        self.assertIn("exceeds the embedding bound 1e+06", message)


class WriterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="embsum-writer-")
        self.rng = np.random.default_rng(3)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def writer(self, name="m", **kw):
        args = dict(dim=5, user_codes=3, item_codes=2, model_version="w-1")
        args.update(kw)
        return ArtifactWriter(os.path.join(self.tmp, name), **args)

    def test_chunks_make_one_artifact_that_ingest_accepts(self):
        upe = self.rng.normal(size=(10, 3, 5)).astype(np.float32)
        q = self.rng.normal(size=(10, 3, 5)).astype(np.float32)
        cpe = self.rng.normal(size=(9, 2, 5)).astype(np.float32)
        with self.writer(user_queries=True) as w:
            for s in range(0, 10, 4):
                w.add_users([f"u{i}" for i in range(s, min(s + 4, 10))],
                            upe[s:s + 4], queries=q[s:s + 4],
                            summaries=[f"s{i}" if i % 2 else None
                                       for i in range(s, min(s + 4, 10))])
            for s in range(0, 9, 2):
                w.add_items([f"i{i}" for i in range(s, min(s + 2, 9))],
                            cpe[s:s + 2])
        d = os.path.join(self.tmp, "m")
        self.assertIsNone(artifact.validate(d))
        np.testing.assert_array_equal(np.load(f"{d}/users/upe.npy"), upe)
        np.testing.assert_array_equal(np.load(f"{d}/users/queries.npy"), q)
        np.testing.assert_array_equal(np.load(f"{d}/items/cpe.npy"), cpe)
        self.assertFalse(os.path.exists(f"{d}/items/keys.npy"))
        with open(f"{d}/users/summaries.jsonl") as f:
            self.assertEqual([json.loads(l)["user_id"] for l in f],
                             ["u1", "u3", "u5", "u7", "u9"])
        with open(f"{d}/manifest.json") as f:
            self.assertEqual(json.load(f), {
                "format_version": 1, "model_version": "w-1", "dim": 5,
                "user_codes": 3, "item_codes": 2, "user_queries": True,
                "item_keys": False})
        p = embsum_procs.ingest(d, os.path.join(self.tmp, "data"))
        self.assertEqual(p.returncode, 0, p.stderr)
        # Only the artifact is left: no temporary directory.
        self.assertEqual(sorted(os.listdir(self.tmp)), ["data", "m"])

    def test_float16_rounds_and_is_accepted(self):
        upe = self.rng.normal(size=(2, 3, 5))
        with self.writer(dtype="float16", item_keys=True) as w:
            w.add_users(["a", "b"], upe)
            w.add_items(["x"], np.ones((1, 2, 5)), keys=np.zeros((1, 2, 5)))
        d = os.path.join(self.tmp, "m")
        got = np.load(f"{d}/users/upe.npy")
        self.assertEqual(got.dtype, np.float16)
        np.testing.assert_array_equal(got, upe.astype(np.float16))
        self.assertIsNone(artifact.validate(d))
        code, _, _, message = ingest_check(d)
        self.assertEqual(code, 0, message)
        with self.writer("big", dtype="float16") as w:
            with self.assertRaisesRegex(ValueError, "float16"):
                w.add_users(["a"], np.full((1, 3, 5), 70000.0))

    def test_an_exception_publishes_nothing_and_keeps_the_old_artifact(self):
        with self.writer() as w:
            w.add_users(["a"], np.ones((1, 3, 5)))
            w.add_items(["x"], np.ones((1, 2, 5)))
        d = os.path.join(self.tmp, "m")
        before = tree(d)
        with self.assertRaises(RuntimeError):
            with self.writer(overwrite=True) as w:
                w.add_users(["b"], np.zeros((1, 3, 5)))
                raise RuntimeError("training crashed")
        self.assertEqual(tree(d), before)
        self.assertEqual(os.listdir(self.tmp), ["m"])
        # Without overwrite, an existing artifact is refused up front.
        with self.assertRaises(FileExistsError):
            self.writer()
        # With overwrite, the new one replaces it only on close().
        w = self.writer(overwrite=True)
        w.add_users(["c", "d"], np.zeros((2, 3, 5)))
        w.add_items(["y"], np.zeros((1, 2, 5)))
        self.assertEqual(tree(d), before)
        w.close()
        with open(f"{d}/users/ids.txt") as f:
            self.assertEqual(f.read(), "c\nd\n")
        self.assertEqual(os.listdir(self.tmp), ["m"])

    def test_bad_records_are_refused_and_the_writer_stays_usable(self):
        with self.writer(item_keys=True) as w:
            cases = [
                (lambda: w.add_users(["a"], np.ones((1, 3, 4))), "shape"),
                (lambda: w.add_users([""], np.ones((1, 3, 5))), "empty id"),
                (lambda: w.add_users(["a", "a"], np.ones((2, 3, 5))),
                 "duplicate"),
                (lambda: w.add_users(["a"], np.full((1, 3, 5), np.nan)),
                 "NaN at vector 0, element 0"),
                (lambda: w.add_users(["a"], np.full((1, 3, 5), 3e38)),
                 "exceeds the embedding bound"),
                (lambda: w.add_users(["a"], np.ones((1, 3, 5)),
                                     queries=np.ones((1, 3, 5))),
                 "user_queries=False"),
                (lambda: w.add_items(["x"], np.ones((1, 2, 5))),
                 "keys missing"),
            ]
            for call, message in cases:
                with self.subTest(message=message):
                    with self.assertRaisesRegex(ValueError, message):
                        call()
            w.add_users(["a"], np.ones((1, 3, 5)))
            with self.assertRaisesRegex(ValueError, "duplicate"):
                w.add_users(["a"], np.ones((1, 3, 5)))
            w.add_items(["x"], np.ones((1, 2, 5)), keys=np.ones((1, 2, 5)))
        d = os.path.join(self.tmp, "m")
        self.assertIsNone(artifact.validate(d))
        self.assertEqual(np.load(f"{d}/users/upe.npy").shape, (1, 3, 5))

    def test_validator_accepts_what_datagen_writes(self):
        d = embsum_procs.datagen(os.path.join(self.tmp, "g"), users=30,
                                 items=40, extra=["--dtype=fp16"])
        self.assertIsNone(artifact.validate(d, chunk_rows=7))


if __name__ == "__main__":
    embsum_unittest.main()
