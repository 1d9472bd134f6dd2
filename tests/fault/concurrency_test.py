#!/usr/bin/env python3
"""Writes beside reads with real processes (issue 15): for a bounded time
(EMBSUM_CONCURRENCY_SECONDS, default 20) one client upserts and deletes
items and upserts users on the admin port while independent clients call
exact Retrieve, approximate Retrieve and Rank (with the user's summary) on
the serving port. Every call must succeed: no INVALID_ARGUMENT from a
snapshot whose arena grew under it, nothing else either.

Rank also checks that the embedding and the summary it answers from are one
version: the user is rewritten with a version number in both its
embedding's scale and its summary, and the scores Rank returns must be the
reference scores of the version its summary names.

Run by ctest with EMBSUM_SERVER, EMBSUM_INGEST, EMBSUM_DATAGEN and
PYTHONPATH set (as the fault tests).
"""
import os
import shutil
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np

import embsum_harness as h
from embsum.v1 import ranking_pb2

SECONDS = float(os.environ.get("EMBSUM_CONCURRENCY_SECONDS", "20"))
RTOL = 1e-4
ATOL = 1e-5


class ConcurrencyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="embsum-concurrency-")
        self.model_dir = h.datagen(os.path.join(self.tmp, "model"), users=10,
                                   items=300, dim=8, seed=3)
        self.model = h.Model(self.model_dir)
        self.data = os.path.join(self.tmp, "data")
        r = h.ingest(self.model_dir, self.data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.server = h.Server(self.data, os.path.join(self.tmp, "server.log"))

    def tearDown(self):
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_upserts_and_deletes_beside_retrieve_and_rank(self):
        self.server.start()
        self.assertTrue(self.server.started, self.server.read_log())
        m = self.model
        n = m.manifest["item_codes"] * m.manifest["dim"]
        rng = np.random.default_rng(5)
        # Rank candidates are never written, so Rank scores depend only on
        # the user's version.
        fixed = m.item_ids[:5]
        churn = m.item_ids[100:]
        user = m.user_ids[0]
        base_a, base_q = m.user(user)

        stop = threading.Event()
        errors = []
        calls = {"upsert": 0, "delete": 0, "user": 0, "exact": 0, "ann": 0,
                 "rank": 0}
        lock = threading.Lock()

        def record(kind, fn):
            try:
                fn()
            except grpc.RpcError as e:
                with lock:
                    errors.append(f"{kind}: {e.code().name}: {e.details()}")
                return
            except AssertionError as e:
                with lock:
                    errors.append(f"{kind}: {e}")
                return
            with lock:
                calls[kind] += 1

        def writer():
            admin = self.server.admin()
            i = 0
            while not stop.is_set():
                i += 1
                batch = []
                for j in range(1 + i % 4):
                    item_id = (f"new-{i}-{j}" if j % 2 else
                               churn[rng.integers(len(churn))])
                    cpe = rng.standard_normal(n)
                    keys = rng.standard_normal(n)
                    batch.append(h.item_record(item_id, cpe, keys))
                record("upsert",
                       lambda: admin.UpsertItems(iter(batch), timeout=30))
                if i % 3 == 0:
                    gone = [churn[rng.integers(len(churn))], f"new-{i - 1}-1"]
                    record("delete", lambda: admin.DeleteItems(
                        ranking_pb2.DeleteItemsRequest(item_ids=gone),
                        timeout=30))

        def user_writer():
            admin = self.server.admin()
            version = 0
            while not stop.is_set():
                version += 1
                scale = 1.0 + (version % 7) * 0.25
                rec = h.user_record(user, base_a * scale, base_q * scale,
                                    summary=f"version {version % 7}")
                record("user",
                       lambda: admin.UpsertUsers(iter([rec]), timeout=30))

        def retriever(exact):
            ranker = self.server.ranker()
            kind = "exact" if exact else "ann"
            while not stop.is_set():
                def call():
                    r = ranker.Retrieve(ranking_pb2.RetrieveRequest(
                        user_id=m.user_ids[1], k=10, exact=exact), timeout=30)
                    assert len(r.items) == 10, f"{len(r.items)} items"
                record(kind, call)

        def ranker_client():
            ranker = self.server.ranker()
            while not stop.is_set():
                def call():
                    r = ranker.Rank(ranking_pb2.RankRequest(
                        user_id=user, candidate_ids=fixed,
                        include_summary=True), timeout=30)
                    got = h.scores_by_id(r)
                    if r.user_summary.startswith("version "):
                        scale = 1.0 + int(r.user_summary.split()[1]) * 0.25
                    else:
                        scale = 1.0  # the ingested user, before any upsert
                    for item_id in fixed:
                        want = h.score(base_a * scale, base_q * scale,
                                       *m.item(item_id))
                        assert np.isclose(got[item_id], want, rtol=RTOL,
                                          atol=ATOL), (
                            f"{item_id}: {got[item_id]} but summary "
                            f"'{r.user_summary}' means {want}")
                record("rank", call)

        threads = [threading.Thread(target=writer),
                   threading.Thread(target=user_writer),
                   threading.Thread(target=retriever, args=(True,)),
                   threading.Thread(target=retriever, args=(False,)),
                   threading.Thread(target=ranker_client)]
        for t in threads:
            t.start()
        # Bounded run: the clients stop after SECONDS of wall time (this is
        # the length of the run, not a synchronisation).
        stop.wait(SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(errors[:10], [], f"{len(errors)} failures; {calls}")
        for kind, count in calls.items():
            self.assertGreater(count, 0, f"no successful {kind} calls: {calls}")
        print(f"calls in {SECONDS:.0f} s: {calls}", flush=True)
        log = self.server.read_log()
        for marker in ("AddressSanitizer", "runtime error", "terminate called",
                       "ThreadSanitizer"):
            self.assertNotIn(marker, log)


if __name__ == "__main__":
    unittest.main()
