#!/usr/bin/env python3
"""Security properties of embsum-server as a process (issue 8):

- the admin RPCs (writes) are not served on the public listener, and the
  admin listener defaults to loopback;
- TLS and mutual TLS: a client that trusts another CA, a client without a
  certificate and a client whose certificate another CA signed are refused;
- limits: message size, candidates, id length and upsert stream size, each
  refused with a clear status and without applying anything;
- no request field ever reaches the filesystem: ids and summaries shaped
  like paths create no file anywhere, and every file in the data directory
  has a name from the store's fixed set.

Run by ctest with EMBSUM_SERVER, EMBSUM_INGEST, EMBSUM_DATAGEN and
PYTHONPATH (stubs + tests/fault for the harness) set.
"""
import os
import re
import shutil
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "python"))
import embsum_unittest  # noqa: E402  (exits SKIP_RETURN_CODE when all skip)

import grpc
import numpy as np

import embsum_harness as h
from embsum.v1 import ranking_pb2
from embsum.v1 import ranking_pb2_grpc


class SecurityTest(h.ModelTestCase):
    PREFIX = "embsum-security-"
    MODEL = dict(users=10, items=100, dim=8, seed=4)

    def start(self, extra=(), data=None, **kw):
        if data is None:
            data = self.data_copy()
        s = h.Server(data, os.path.join(self.work,
                                        f"server{len(self.servers)}.log"),
                     extra=extra, **kw)
        self.servers.append(s)
        s.start()
        self.assertTrue(s.started, s.read_log())
        return s

    def assert_code(self, code, call, *args, **kw):
        with self.assertRaises(grpc.RpcError) as e:
            call(*args, **kw)
        self.assertEqual(e.exception.code(), code, e.exception.details())
        return e.exception.details()

    # --- Admin isolation ---------------------------------------------------

    def test_admin_rpcs_are_not_served_on_the_public_listener(self):
        s = self.start()
        self.assertNotEqual(s.listen, s.admin_listen)
        public_admin = s.admin(s.listen)
        user = self.model.user_ids[0]
        item = self.model.item_ids[0]
        self.assert_code(grpc.StatusCode.UNIMPLEMENTED,
                         public_admin.UpsertUsers,
                         iter([h.user_record(user, np.zeros((2, 8)),
                                             np.zeros((2, 8)))]), timeout=10)
        self.assert_code(grpc.StatusCode.UNIMPLEMENTED,
                         public_admin.UpsertItems,
                         iter([h.item_record("evil", np.zeros((2, 8)),
                                             np.zeros((2, 8)))]), timeout=10)
        self.assert_code(grpc.StatusCode.UNIMPLEMENTED,
                         public_admin.DeleteItems,
                         ranking_pb2.DeleteItemsRequest(item_ids=[item]),
                         timeout=10)
        # Nothing changed: the item is still there, "evil" is not.
        r = h.rank(s.ranker(), user, [item, "evil"])
        self.assertEqual([i.item_id for i in r.items], [item])
        self.assertEqual(list(r.unknown_item_ids), ["evil"])
        # The same delete on the admin listener works (the test is live).
        d = s.admin().DeleteItems(ranking_pb2.DeleteItemsRequest(
            item_ids=[item]), timeout=10)
        self.assertEqual(d.deleted, 1)

    def test_admin_listener_defaults_to_loopback(self):
        out = subprocess.run([h.SERVER, "--helpfull"], capture_output=True,
                             text=True, timeout=30)
        text = out.stdout + out.stderr
        m = re.search(r"--admin_listen \(.*?\);\s+default: \"([^\"]+)\"",
                      text, re.S)
        self.assertIsNotNone(m, text)
        self.assertTrue(m.group(1).startswith("127.0.0.1:"), m.group(1))

    # --- TLS ---------------------------------------------------------------

    def make_ca(self, name):
        d = os.path.join(self.work, name)
        os.makedirs(d)
        key, crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-days", "2", "-subj", f"/CN={name}",
                        "-keyout", key, "-out", crt], check=True,
                       capture_output=True)
        return key, crt

    def make_cert(self, ca, name, server):
        ca_key, ca_crt = ca
        d = os.path.join(self.work, name)
        os.makedirs(d)
        key, csr, crt, ext = (os.path.join(d, f) for f in
                              ("key.pem", "req.csr", "crt.pem", "ext.cnf"))
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server
                    else "extendedKeyUsage=clientAuth\n")
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes",
                        "-subj", f"/CN={name}", "-keyout", key, "-out", csr],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt,
                        "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                        "-extfile", ext, "-out", crt], check=True,
                       capture_output=True)
        return key, crt

    def test_mutual_tls_refuses_wrong_ca_and_missing_certificates(self):
        if shutil.which("openssl") is None:
            self.skipTest("SKIPPED LOUDLY: openssl not installed")
        good_ca = self.make_ca("good-ca")
        evil_ca = self.make_ca("evil-ca")
        server_key, server_crt = self.make_cert(good_ca, "server", True)
        client = self.make_cert(good_ca, "client", False)
        intruder = self.make_cert(evil_ca, "intruder", False)
        s = self.start(extra=[f"--tls_cert={server_crt}",
                              f"--tls_key={server_key}",
                              f"--tls_client_ca={good_ca[1]}"])

        def read(path):
            with open(path, "rb") as f:
                return f.read()

        def call(root, cert=None, admin=False):
            creds = grpc.ssl_channel_credentials(
                root_certificates=read(root),
                private_key=read(cert[0]) if cert else None,
                certificate_chain=read(cert[1]) if cert else None)
            ch = grpc.secure_channel(s.admin_listen if admin else s.listen,
                                     creds)
            try:
                if admin:
                    return ranking_pb2_grpc.RankerAdminStub(ch).DeleteItems(
                        ranking_pb2.DeleteItemsRequest(item_ids=["none"]),
                        timeout=10).deleted
                return ranking_pb2_grpc.RankerStub(ch).GetModelInfo(
                    ranking_pb2.GetModelInfoRequest(), timeout=10).users
            finally:
                ch.close()

        self.assertEqual(call(good_ca[1], client), 10)
        # The admin listener is under the same mutual TLS.
        self.assertEqual(call(good_ca[1], client, admin=True), 0)
        for name, args in {"client trusts another CA": (evil_ca[1], client),
                           "no client certificate": (good_ca[1], None),
                           "client certificate from another CA":
                               (good_ca[1], intruder)}.items():
            for admin in (False, True):
                with self.subTest(name, admin=admin):
                    self.assert_code(grpc.StatusCode.UNAVAILABLE, call,
                                     *args, admin=admin)
        with self.subTest("plaintext client"):
            self.assert_code(grpc.StatusCode.UNAVAILABLE,
                             s.ranker().GetModelInfo,
                             ranking_pb2.GetModelInfoRequest(), timeout=10)
            self.assert_code(grpc.StatusCode.UNAVAILABLE,
                             s.admin().DeleteItems,
                             ranking_pb2.DeleteItemsRequest(item_ids=["x"]),
                             timeout=10)

    # --- Limits ------------------------------------------------------------

    def test_limits_on_candidates_ids_message_and_stream_size(self):
        s = self.start(extra=["--max_candidates=100",
                              "--max_retrieve_k=100",
                              "--max_receive_bytes=65536",
                              "--max_upsert_bytes=100000"])
        ranker, admin = s.ranker(), s.admin()
        user = self.model.user_ids[0]
        items = self.model.item_ids
        with self.subTest("candidates"):
            self.assertEqual(len(h.rank(ranker, user, items[:100]).items),
                             100)
            details = self.assert_code(grpc.StatusCode.INVALID_ARGUMENT,
                                       h.rank, ranker, user, items + ["x"])
            self.assertIn("100", details)
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT,
                             ranker.Retrieve,
                             ranking_pb2.RetrieveRequest(user_id=user, k=101),
                             timeout=10)
        with self.subTest("id length"):
            # 256 bytes is a valid (unknown) id; 257 is refused.
            self.assert_code(grpc.StatusCode.NOT_FOUND, h.rank, ranker,
                             "u" * 256, items[:3])
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, h.rank,
                             ranker, "u" * 257, items[:3])
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, h.rank,
                             ranker, "bad\nid", items[:3])
            self.assert_code(grpc.StatusCode.INVALID_ARGUMENT, h.rank,
                             ranker, "", items[:3])
            # An over-long candidate id is never found.
            r = h.rank(ranker, user, items[:3] + ["i" * 10000])
            self.assertEqual(len(r.items), 3)
            for bad in ("x" * 257, "", "tab\tid"):
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT,
                                 admin.UpsertItems,
                                 iter([h.item_record("fine", np.ones((2, 8)),
                                                     np.ones((2, 8))),
                                       h.item_record(bad, np.ones((2, 8)),
                                                     np.ones((2, 8)))]),
                                 timeout=10)
                self.assert_code(grpc.StatusCode.INVALID_ARGUMENT,
                                 admin.UpsertUsers,
                                 iter([h.user_record(bad, np.ones((2, 8)),
                                                     np.ones((2, 8)))]),
                                 timeout=10)
            # Atomic: "fine" of the refused streams was not applied.
            self.assertEqual(list(h.rank(ranker, user,
                                         ["fine"]).unknown_item_ids), ["fine"])
        with self.subTest("message size"):
            request = ranking_pb2.RankRequest(
                user_id=user, candidate_ids=[f"{i:0>800}" for i in range(90)])
            self.assertGreater(request.ByteSize(), 65536)
            self.assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, ranker.Rank,
                             request, timeout=10)
        with self.subTest("upsert stream size"):
            # 20 records of 2x8 floats fit; 2000 records (~300 kB) do not.
            rng = np.random.default_rng(1)
            stream = [h.item_record(f"s{i}", rng.standard_normal((2, 8)),
                                    rng.standard_normal((2, 8)))
                      for i in range(2000)]
            details = self.assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       admin.UpsertItems, iter(stream),
                                       timeout=30)
            self.assertIn("100000", details)
            r = h.rank(ranker, user, ["s0", "s1999"])
            self.assertEqual(len(r.unknown_item_ids), 2)
            ok = admin.UpsertItems(iter(stream[:20]), timeout=30)
            self.assertEqual(ok.accepted, 20)
        # Still healthy after all of it.
        self.assertEqual(len(h.rank(ranker, user, items[:5]).items), 5)

    # --- Nothing reaches the filesystem ------------------------------------

    DATA_NAME = re.compile(
        r"^(manifest\.json|shard\.json|users|items|log|CURRENT|IDENTITY|LOCK|LOG"
        r"|LOG\.old\.\d+|MANIFEST-\d+|OPTIONS-\d+|\d+\.(sst|log|blob)"
        r"|snapshot-\d+|ids\.txt|meta\.json|(cpe|keys)-\d+\.faiss)$")

    def test_no_request_field_reaches_the_filesystem(self):
        marker = "pwn" + uuid.uuid4().hex[:12]
        cwd = os.path.join(self.work, "cwd")
        tmpdir = os.path.join(self.work, "tmpdir")
        os.makedirs(cwd)
        os.makedirs(tmpdir)
        env = dict(os.environ, TMPDIR=tmpdir)
        s = self.start(cwd=cwd, env=env)
        data = s.data_dir
        hostile = [
            f"../../../../../../tmp/{marker}",
            f"/tmp/{marker}",
            f"{marker}/../../{marker}",
            f"..\\..\\{marker}",
            f"~/{marker}",
            f"./{marker}",
            f"{marker}%2f..%2f{marker}",
            f"file:///tmp/{marker}",
            f"{data}/{marker}",
            f"{data}/users/{marker}",
            f"{data}/items/{marker}",
        ]
        ranker, admin = s.ranker(), s.admin()
        user = self.model.user_ids[0]
        for bad in hostile:
            try:
                h.rank(ranker, bad, [bad])
            except grpc.RpcError as e:
                self.assertIn(e.code(), (grpc.StatusCode.NOT_FOUND,
                                         grpc.StatusCode.INVALID_ARGUMENT))
            h.rank(ranker, user, [bad])
            try:
                ranker.Retrieve(ranking_pb2.RetrieveRequest(
                    user_id=user, k=5, exclude_item_ids=[bad]), timeout=10)
            except grpc.RpcError as e:
                self.assertEqual(e.code(),
                                 grpc.StatusCode.FAILED_PRECONDITION, e)
        rng = np.random.default_rng(2)
        admin.UpsertUsers(iter([
            h.user_record(bad, rng.standard_normal((2, 8)),
                          rng.standard_normal((2, 8)), summary=bad)
            for bad in hostile]), timeout=30)
        # Enough item upserts to fold the log into a new FAISS snapshot
        # (4096 entries), so the hostile ids pass through snapshot writing.
        for b in range(9):
            admin.UpsertItems(iter([
                h.item_record(f"{hostile[i % len(hostile)]}-{b}-{i}",
                              rng.standard_normal((2, 8)),
                              rng.standard_normal((2, 8)))
                for i in range(500)]), timeout=60)
        admin.DeleteItems(ranking_pb2.DeleteItemsRequest(
            item_ids=hostile + [f"{hostile[0]}-0-0"]), timeout=30)
        # The hostile ids are data: they rank like any other.
        r = h.rank(ranker, hostile[0], [f"{hostile[1]}-3-1"])
        self.assertEqual(len(r.items), 1)
        s.stop()

        def names_under(top):
            for dirpath, dirnames, filenames in os.walk(top):
                for n in dirnames + filenames:
                    yield os.path.join(dirpath, n)

        leaked = [p for top in (self.work, "/tmp", cwd, tmpdir)
                  for p in (names_under(top) if top != "/tmp"
                            else (os.path.join(top, n)
                                  for n in os.listdir(top)))
                  if marker in p]
        self.assertEqual(leaked, [])
        self.assertEqual(os.listdir(cwd), [])
        strange = [p for p in names_under(data)
                   if not self.DATA_NAME.match(os.path.basename(p))]
        self.assertEqual(strange, [])
        snapshots = [n for n in os.listdir(os.path.join(data, "items"))
                     if n.startswith("snapshot-")]
        self.assertTrue(any(n != "snapshot-000001" for n in snapshots),
                        f"no checkpoint happened: {snapshots}")


if __name__ == "__main__":
    embsum_unittest.main()
