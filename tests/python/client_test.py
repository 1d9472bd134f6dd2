"""embsum.client and tools/server/rank_client.py against a real
embsum-server started here on loopback (synchronised on its start line and
grpc.health.v1, stopped with SIGTERM), plus the embedding bound of
docs/design.md section 10 over gRPC: an upsert of 3e38 is INVALID_ARGUMENT
naming the record and the value, and no score is ever NaN.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embsum_unittest  # noqa: E402
import embsum_procs  # noqa: E402
from embsum import artifact, client  # noqa: E402
from embsum.torch import PolyAttentionScore  # noqa: E402

RANK_CLIENT = os.path.join(embsum_procs.REPO, "tools/server/rank_client.py")


def load(model_dir):
    m = json.load(open(os.path.join(model_dir, "manifest.json")))
    ids = lambda p: open(os.path.join(model_dir, p)).read().split()
    arr = lambda p: torch.from_numpy(
        np.load(os.path.join(model_dir, p)).astype(np.float64))
    users, items = ids("users/ids.txt"), ids("items/ids.txt")
    upe = arr("users/upe.npy")
    q = arr("users/queries.npy") if m["user_queries"] else upe
    cpe = arr("items/cpe.npy")
    keys = arr("items/keys.npy") if m["item_keys"] else cpe
    return m, users, items, upe, q, cpe, keys


class _WithServer(unittest.TestCase):
    """A server of its own per test class: ReadTest's sees only the
    artifact, WriteTest's takes the upserts."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="embsum-client-")
        cls.model = embsum_procs.datagen(
            os.path.join(cls.tmp, "model"), users=40, items=80, dim=8,
            user_codes=3, item_codes=2, seed=5)
        embsum_procs.ingest(cls.model, os.path.join(cls.tmp, "data"))
        (cls.manifest, cls.users, cls.items, cls.upe, cls.q, cls.cpe,
         cls.keys) = load(cls.model)
        cls.server = embsum_procs.Server(os.path.join(cls.tmp, "data"))
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, cls.server.log()

    def reference(self, user, items):
        u = self.users.index(user)
        rows = [self.items.index(i) for i in items]
        return PolyAttentionScore()(self.upe[u], self.q[u], self.cpe[rows],
                                    self.keys[rows])

    # -- tools/server/rank_client.py ---------------------------------------
    def cli(self, *args, target=None):
        env = dict(os.environ)
        return subprocess.run(
            [sys.executable, RANK_CLIENT,
             f"--target={target or self.server.listen}", *args],
            capture_output=True, text=True, timeout=60, env=env)


class ReadTest(_WithServer):
    def test_health_and_info(self):
        r = self.server.ranker()
        self.assertEqual(r.health(), "SERVING")
        info = r.info()
        self.assertEqual(info["users"], 40)
        self.assertEqual(info["items"], 80)
        self.assertEqual((info["dim"], info["user_codes"],
                          info["item_codes"]), (8, 3, 2))

    def test_rank_equals_the_torch_score_in_rank_order(self):
        r = self.server.ranker()
        cands = self.items[:30] + ["no-such-item"]
        for user in self.users[:10]:
            got = r.rank(user, cands)
            self.assertEqual(len(got), 30)
            scores, codes = self.reference(user, self.items[:30])
            want = {i: (float(s), int(c))
                    for i, s, c in zip(self.items[:30], scores, codes)}
            for item_id, score, code in got:
                ref, ref_code = want[item_id]
                self.assertLessEqual(abs(score - ref), 1e-5 * abs(ref) + 1e-6)
                self.assertEqual(code, ref_code, (user, item_id))
            got_scores = [s for _, s, _ in got]
            self.assertEqual(got_scores, sorted(got_scores, reverse=True))
        top = r.rank(self.users[0], cands, top_k=5)
        self.assertEqual(top, r.rank(self.users[0], cands)[:5])

    def test_retrieve_exact_is_the_full_scan(self):
        r = self.server.ranker()
        user = self.users[3]
        got = r.retrieve(user, 7, exact=True)
        scores, _ = self.reference(user, self.items)
        best = torch.argsort(scores, descending=True)[:7]
        self.assertEqual([i for i, _, _ in got],
                         [self.items[int(b)] for b in best])

    def test_errors_are_not_retried_and_name_the_code(self):
        r = self.server.ranker()
        with self.assertRaises(client.RpcError) as ctx:
            r.rank("nobody", self.items[:3])
        self.assertEqual(ctx.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_unavailable_is_retried_then_raised(self):
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = client.Ranker(f"127.0.0.1:{port}", timeout=5, retries=2)
        calls = []
        real = r.stub.Rank

        def counting(request, **kw):
            calls.append(kw["timeout"])
            return real(request, **kw)
        r.stub.Rank = counting
        with self.assertRaises(client.RpcError) as ctx:
            r.rank("u", ["i"])
        r.close()
        self.assertEqual(ctx.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(len(calls), 3)  # the call and two retries

    def test_rank_and_retrieve_send_x_user_id(self):
        seen = []

        class Capture(grpc.UnaryUnaryClientInterceptor):
            def intercept_unary_unary(self, continuation, details, request):
                seen.append(dict(details.metadata or ()))
                return continuation(details, request)
        r = self.server.ranker()
        r.stub = client.ranking_pb2_grpc.RankerStub(
            grpc.intercept_channel(r.channel, Capture()))
        r.rank(self.users[1], self.items[:2])
        r.retrieve(self.users[2], 3)
        self.assertEqual([m.get("x-user-id") for m in seen],
                         [self.users[1], self.users[2]])
        r.route_header = False
        r.rank(self.users[1], self.items[:2])
        self.assertNotIn("x-user-id", seen[-1])

    def test_cli_health_info_rank_retrieve(self):
        p = self.cli("health")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), {"status": "SERVING"})
        p = self.cli("info")
        self.assertEqual(json.loads(p.stdout)["items"] >= 80, True, p.stderr)
        p = self.cli("rank", f"--user={self.users[0]}",
                     f"--candidates={','.join(self.items[:4])},nope",
                     "--top_k=3")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        want = self.server.ranker().rank(self.users[0], self.items[:4],
                                         top_k=3)
        self.assertEqual([(i["item_id"], i["score"], i["top_user_code"])
                          for i in out["items"]], want)
        self.assertEqual(out["unknown_item_ids"], ["nope"])
        p = self.cli("retrieve", f"--user={self.users[0]}", "--k=4",
                     "--exact")
        self.assertEqual(len(json.loads(p.stdout)["items"]), 4, p.stderr)
        p = self.cli("rank", "--user=nobody", "--candidates=x")
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith("NOT_FOUND: "), p.stderr)

class WriteTest(_WithServer):
    def test_upserts_in_chunks_with_progress(self):
        a = self.server.admin()
        r = self.server.ranker()
        rng = np.random.default_rng(9)
        ids = [f"new-user-{i}" for i in range(10)]
        upe = rng.normal(size=(10, 3, 8)).astype(np.float32)
        q = rng.normal(size=(10, 3, 8)).astype(np.float32)
        progress = []
        n = a.upsert_users(ids, upe, q, summaries=["s"] * 10, chunk_size=3,
                           progress=lambda d, t: progress.append((d, t)))
        self.assertEqual(n, 10)
        self.assertEqual(progress, [(3, 10), (6, 10), (9, 10), (10, 10)])
        got = dict((i, s) for i, s, _ in r.rank(ids[7], self.items[:5]))
        rows = list(range(5))
        want, _ = PolyAttentionScore()(
            torch.from_numpy(upe[7]).double(), torch.from_numpy(q[7]).double(),
            self.cpe[rows], self.keys[rows])
        for item, w in zip(self.items[:5], want):
            self.assertLessEqual(abs(got[item] - float(w)), 1e-5 * abs(w))
        item_ids = [f"new-item-{i}" for i in range(5)]
        cpe = rng.normal(size=(5, 2, 8))
        self.assertEqual(a.upsert_items(item_ids, cpe, cpe, chunk_size=2), 5)
        self.assertEqual(len(r.rank(ids[0], item_ids)), 5)
        self.assertEqual(a.delete_items(item_ids[:1]), 1)

    def test_values_beyond_the_bound_are_invalid_argument_never_nan(self):
        a = self.server.admin()
        r = self.server.ranker()
        upe = np.ones((2, 3, 8), dtype=np.float32)
        upe[1, 2, 5] = 3e38
        with self.assertRaises(client.RpcError) as ctx:
            a.upsert_users(["big-0", "big-1"], upe, upe)
        e = ctx.exception
        self.assertEqual(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("big-1", e.details)
        self.assertIn("3e+38", e.details)
        self.assertIn("embedding bound 1e+06", e.details)
        # Atomic: neither record was applied.
        for user in ("big-0", "big-1"):
            with self.assertRaises(client.RpcError) as ctx:
                r.rank(user, self.items[:2])
            self.assertEqual(ctx.exception.code, grpc.StatusCode.NOT_FOUND)
        # Items too; and the largest value allowed still scores finite.
        cpe = np.ones((1, 2, 8), dtype=np.float32)
        cpe[0, 1, 0] = -3e38
        with self.assertRaises(client.RpcError) as ctx:
            a.upsert_items(["big-item"], cpe, cpe)
        self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("big-item", ctx.exception.details)
        edge = np.full((1, 3, 8), artifact.MAX_EMBEDDING_MAGNITUDE,
                       dtype=np.float32)
        a.upsert_users(["edge-user"], edge, edge)
        cpe = np.full((1, 2, 8), -artifact.MAX_EMBEDDING_MAGNITUDE,
                      dtype=np.float32)
        a.upsert_items(["edge-item"], cpe, cpe)
        for item, score, _ in r.rank("edge-user",
                                     self.items[:10] + ["edge-item"]):
            self.assertTrue(np.isfinite(score), (item, score))
        scores = [s for _, s, _ in r.retrieve("edge-user", 20, exact=True)]
        self.assertTrue(np.all(np.isfinite(scores)), scores)

    def test_cli_upsert_from_an_artifact_directory(self):
        d = os.path.join(self.tmp, "cli-upsert")
        rng = np.random.default_rng(11)
        with artifact.ArtifactWriter(d, dim=8, user_codes=3, item_codes=2,
                                     model_version="x", user_queries=True,
                                     item_keys=True) as w:
            w.add_users([f"cli-u{i}" for i in range(7)],
                        rng.normal(size=(7, 3, 8)),
                        queries=rng.normal(size=(7, 3, 8)),
                        summaries=["hello"] * 7)
            w.add_items([f"cli-i{i}" for i in range(5)],
                        rng.normal(size=(5, 2, 8)),
                        keys=rng.normal(size=(5, 2, 8)))
        for kind, n in (("users", 7), ("items", 5)):
            p = self.cli("upsert", kind, f"--model_dir={d}",
                         "--chunk_size=2", target=self.server.admin_listen)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout), {"accepted": n})
            self.assertIn(f"upsert {kind}: {n}/{n} (100%)", p.stderr)
        resp = self.server.ranker().rank_response(
            "cli-u3", [f"cli-i{i}" for i in range(5)], include_summary=True)
        self.assertEqual(len(resp.items), 5)
        self.assertEqual(resp.user_summary, "hello")
        # The same from separate .npy files.
        p = self.cli("upsert", "items", f"--ids={d}/items/ids.txt",
                     f"--cpe={d}/items/cpe.npy", f"--keys={d}/items/keys.npy",
                     target=self.server.admin_listen)
        self.assertEqual(p.returncode, 0, p.stderr)


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TlsTest(unittest.TestCase):
    """Mutual TLS: embsum.client.TLS against a server started with
    --tls_cert, --tls_key and --tls_client_ca."""

    def setUp(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl not installed")
        self.tmp = tempfile.mkdtemp(prefix="embsum-tls-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cert(self, name, ca, server):
        key, csr, crt, ext = (os.path.join(self.tmp, f"{name}.{s}")
                              for s in ("key", "csr", "crt", "ext"))
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server
                    else "extendedKeyUsage=clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
                 f"/CN={name}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca + ".crt", "-CAkey",
                 ca + ".key", "-CAcreateserial", "-days", "2", "-extfile",
                 ext, "-out", crt)
        return key, crt

    def test_mutual_tls(self):
        ca = os.path.join(self.tmp, "ca")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                 "2", "-subj", "/CN=test-ca", "-keyout", ca + ".key",
                 "-out", ca + ".crt")
        server_key, server_crt = self.cert("server", ca, True)
        client_key, client_crt = self.cert("client", ca, False)
        model = embsum_procs.datagen(os.path.join(self.tmp, "m"), users=5,
                                     items=9)
        embsum_procs.ingest(model, os.path.join(self.tmp, "data"))
        tls = client.TLS(ca_cert=ca + ".crt", cert=client_crt,
                         key=client_key)
        with embsum_procs.Server(
                os.path.join(self.tmp, "data"),
                extra=[f"--tls_cert={server_crt}", f"--tls_key={server_key}",
                       f"--tls_client_ca={ca}.crt"], tls=tls) as s:
            self.assertEqual(s.ranker().info()["users"], 5)
            self.assertEqual(s.admin().delete_items(["none"]), 0)
            for name, other in (
                    ("no client certificate", client.TLS(ca_cert=ca + ".crt")),
                    ("plaintext", None)):
                with self.subTest(name):
                    r = s.ranker(tls=other, timeout=5, retries=0)
                    with self.assertRaises(client.RpcError) as ctx:
                        r.info()
                    self.assertEqual(ctx.exception.code,
                                     grpc.StatusCode.UNAVAILABLE)


class ClientUnitTest(unittest.TestCase):
    def test_health_wire_format(self):
        self.assertEqual(client._health_request(""), b"")
        self.assertEqual(client._health_request("x"), b"\x0a\x01x")
        self.assertEqual(client._health_status(b"\x08\x01"), "SERVING")
        self.assertEqual(client._health_status(b"\x08\x02"), "NOT_SERVING")
        self.assertEqual(client._health_status(b""), "UNKNOWN")

    def test_tls_needs_cert_and_key_together(self):
        with self.assertRaises(ValueError):
            client.TLS(cert="c.pem")


if __name__ == "__main__":
    embsum_unittest.main()
