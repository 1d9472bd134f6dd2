"""User-sharded replica groups behind the real HAProxy, on loopback.

Each test starts tools/embsum-local-cluster (2 shards x 2 replicas of a tiny
model) and drives it through the proxy: embsum-loadgen without errors, a
replica SIGKILLed under load, a rolling model reload, and the CRC-32 split
of the users across the shards. Synchronised on events (counts of answered
calls, HAProxy's view of its servers, GetModelInfo), never on sleeps.

Exits 77 (ctest SKIP_RETURN_CODE) when haproxy is not installed.
Environment (set by ctest): EMBSUM_SERVER, EMBSUM_INGEST, EMBSUM_DATAGEN,
EMBSUM_LOADGEN, EMBSUM_LOCAL_CLUSTER, EMBSUM_BUILD_DIR; PYTHONPATH holds the
generated stubs and tests/fault (embsum_harness).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import zlib

import grpc

if shutil.which("haproxy") is None:
    print("SKIP: haproxy is not installed (tools/setup.sh installs Debian's "
          "haproxy package); the sharded-cluster tests need the real proxy")
    sys.exit(77)

import embsum_harness as harness  # noqa: E402
from embsum.v1 import ranking_pb2  # noqa: E402
from embsum.v1 import ranking_pb2_grpc  # noqa: E402

LOADGEN = os.environ["EMBSUM_LOADGEN"]
LOCAL_CLUSTER = os.environ["EMBSUM_LOCAL_CLUSTER"]
BUILD_DIR = os.environ["EMBSUM_BUILD_DIR"]

SHARDS = 2
REPLICAS = 2
USERS = 120
ITEMS = 60
CALL_TIMEOUT_S = 10
WAIT_S = 60  # bound on every wait for an event


def wait_for(predicate, what, timeout=WAIT_S, interval=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what}")
        time.sleep(interval)


def shard_of(user_id):
    return zlib.crc32(user_id.encode("utf-8")) % SHARDS


class LocalCluster:
    """tools/embsum-local-cluster as a child process."""

    def __init__(self, model_dir, work_dir, extra=()):
        self.work_dir = work_dir
        self.out_path = os.path.join(work_dir, "local-cluster.out")
        os.makedirs(work_dir, exist_ok=True)
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(
            [LOCAL_CLUSTER, f"--model_dir={model_dir}",
             f"--work_dir={work_dir}", f"--shards={SHARDS}",
             f"--replicas={REPLICAS}", "--listen=127.0.0.1:0",
             f"--build_dir={BUILD_DIR}", "--check_inter=200ms", *extra],
            stdout=self.out, stderr=subprocess.STDOUT)
        path = os.path.join(work_dir, "cluster.json")
        wait_for(lambda: os.path.exists(path) or self.proc.poll() is not None,
                 "cluster.json")
        if not os.path.exists(path):
            raise AssertionError("embsum-local-cluster exited with "
                                 f"{self.proc.returncode}:\n{self.output()}")
        with open(path) as f:
            self.info = json.load(f)
        self.proxy = self.info["proxy"]["listen"]
        self.servers = self.info["servers"]
        self.channels = []

    def output(self):
        with open(self.out_path) as f:
            return f.read()

    def channel(self, target):
        ch = grpc.insecure_channel(target)
        self.channels.append(ch)
        return ch

    def ranker(self, target=None):
        return ranking_pb2_grpc.RankerStub(self.channel(target or self.proxy))

    def admin(self, server):
        return ranking_pb2_grpc.RankerAdminStub(
            self.channel(server["admin_listen"]))

    def server(self, shard, replica):
        return next(s for s in self.servers
                    if s["shard"] == shard and s["replica"] == replica)

    def proxy_status(self):
        """{(backend, server): status} from HAProxy's CSV stats."""
        url = f"http://{self.info['proxy']['stats']}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as r:
            rows = r.read().decode().lstrip("# ").splitlines()
        header = rows[0].split(",")
        px, sv, st = (header.index("pxname"), header.index("svname"),
                      header.index("status"))
        out = {}
        for row in rows[1:]:
            cols = row.split(",")
            out[(cols[px], cols[sv])] = cols[st]
        return out

    def stop(self):
        """SIGTERM; returns the exit code. Every process it started is gone."""
        for ch in self.channels:
            ch.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.out.close()
        return code

    def pids(self):
        return ([self.info["proxy"]["pid"]] +
                [s["pid"] for s in self.servers] +
                [n["pid"] for n in self.info.get("nats", [])])


def alive(pid):
    """True while `pid` runs (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


class Load:
    """Rank calls through the proxy from a few threads until stopped.

    Every answer is recorded: its status code and, when OK, model_version.
    """

    def __init__(self, stub, user_ids, item_ids, threads=4):
        self.stub = stub
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []  # (user_id, code, details)
        self.versions = set()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,))
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, index):
        i = index
        while not self.stopping.is_set():
            user = self.user_ids[i % len(self.user_ids)]
            candidates = [self.item_ids[(i + j) % len(self.item_ids)]
                          for j in range(10)]
            i += len(self.threads)
            try:
                r = self.stub.Rank(
                    ranking_pb2.RankRequest(user_id=user,
                                            candidate_ids=candidates),
                    metadata=[("x-user-id", user)], timeout=CALL_TIMEOUT_S)
                with self.lock:
                    self.ok += 1
                    self.versions.add(r.model_version)
            except grpc.RpcError as e:
                with self.lock:
                    self.failures.append((user, e.code(), e.details()))

    def answered(self):
        with self.lock:
            return self.ok + len(self.failures)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=CALL_TIMEOUT_S + 5)


class ClusterTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="embsum-cluster-")
        self.model = harness.datagen(os.path.join(self.tmp, "model-v1"),
                                     users=USERS, items=ITEMS,
                                     model_version="v1")
        self.m = harness.Model(self.model)
        self.cluster = LocalCluster(self.model, os.path.join(self.tmp, "w"))

    def tearDown(self):
        code = self.cluster.stop()
        pids = self.cluster.pids()
        output = self.cluster.output()
        if code == 0 and not any(alive(p) for p in pids):
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0, output)
        self.assertEqual([p for p in pids if alive(p)], [],
                         "processes left after SIGTERM")

    def test_loadgen_through_proxy_has_no_errors(self):
        out = os.path.join(self.tmp, "loadgen.json")
        r = subprocess.run(
            [LOADGEN, f"--target={self.cluster.proxy}",
             f"--model_dir={self.model}", "--candidates=20",
             "--concurrency=4", "--duration=2", f"--json={out}"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            report = json.load(f)
        self.assertEqual(report["errors"], 0, report["codes"])
        self.assertNotIn("NOT_FOUND", report["codes"])
        self.assertEqual(set(report["codes"]), {"OK"}, report["codes"])
        self.assertGreater(report["codes"]["OK"], 0)
        # Each shard's backend answered (loadgen's users span both shards).
        print(f"through HAProxy: {report['qps']:.0f} qps, "
              f"p50 {report['latency_seconds']['p50'] * 1e3:.2f} ms")

    def test_sigkill_of_a_replica_under_load_fails_no_call(self):
        load = Load(self.cluster.ranker(), self.m.user_ids, self.m.item_ids)
        try:
            wait_for(lambda: load.answered() >= 200, "200 calls before kill")
            victim = self.cluster.server(0, 1)
            os.kill(victim["pid"], signal.SIGKILL)
            at_kill = load.answered()
            wait_for(lambda: self.cluster.proxy_status().get(
                ("embsum_shard0", "shard0_r1")) == "DOWN",
                "HAProxy to mark the killed replica DOWN")
            wait_for(lambda: load.answered() >= at_kill + 400,
                     "400 calls after the kill")
        finally:
            load.stop()
        print(f"SIGKILL of a replica: {load.answered()} calls, "
              f"{load.answered() - at_kill} after the kill, "
              f"{len(load.failures)} failed")
        self.assertEqual(load.failures, [])
        self.assertEqual(load.versions, {"v1"})
        self.assertFalse(alive(victim["pid"]))

    def test_rolling_reload_fails_no_call_and_serves_old_or_new(self):
        v2 = harness.datagen(os.path.join(self.tmp, "model-v2"), users=USERS,
                             items=ITEMS, seed=2, model_version="v2")
        load = Load(self.cluster.ranker(), self.m.user_ids, self.m.item_ids)
        try:
            wait_for(lambda: load.answered() >= 200, "200 calls on v1")
            for s in self.cluster.servers:
                r = subprocess.run(
                    [harness.INGEST, f"--model_dir={v2}",
                     f"--data_dir={s['data_dir']}", f"--shards={SHARDS}",
                     f"--shard={s['shard']}", "--force"],
                    capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                os.kill(s["pid"], signal.SIGHUP)
                direct = self.cluster.ranker(s["listen"])
                wait_for(lambda: direct.GetModelInfo(
                    ranking_pb2.GetModelInfoRequest(),
                    timeout=CALL_TIMEOUT_S).model_version == "v2",
                    f"shard {s['shard']} replica {s['replica']} on v2")
                before = load.answered()
                wait_for(lambda: load.answered() >= before + 100,
                         "100 calls after a replica's reload")
        finally:
            load.stop()
        print(f"rolling reload of {len(self.cluster.servers)} replicas: "
              f"{load.answered()} calls, {len(load.failures)} failed, "
              f"versions {sorted(load.versions)}")
        self.assertEqual(load.failures, [])
        self.assertEqual(load.versions, {"v1", "v2"})
        for s in self.cluster.servers:
            info = self.cluster.ranker(s["listen"]).GetModelInfo(
                ranking_pb2.GetModelInfoRequest(), timeout=CALL_TIMEOUT_S)
            self.assertEqual(info.model_version, "v2")

    def test_each_shard_holds_exactly_its_crc32_split(self):
        users = self.m.user_ids
        split = {i: {u for u in users if shard_of(u) == i}
                 for i in range(SHARDS)}
        self.assertTrue(all(split.values()), "a shard got no user")
        self.assertEqual(len(self.cluster.servers), SHARDS * REPLICAS)
        for field in ("shard", "replica", "pid", "listen"):
            self.assertTrue(all(field in s for s in self.cluster.servers))
        self.assertIn("pid", self.cluster.info["proxy"])
        candidates = self.m.item_ids[:5]
        for s in self.cluster.servers:
            stub = self.cluster.ranker(s["listen"])
            info = stub.GetModelInfo(ranking_pb2.GetModelInfoRequest(),
                                     timeout=CALL_TIMEOUT_S)
            self.assertEqual(info.users, len(split[s["shard"]]))
            with open(os.path.join(s["data_dir"], "shard.json")) as f:
                recorded = json.load(f)
            self.assertEqual((recorded["shard"], recorded["shards"]),
                             (s["shard"], SHARDS))
            for u in users:
                request = ranking_pb2.RankRequest(user_id=u,
                                                  candidate_ids=candidates)
                if u in split[s["shard"]]:
                    r = stub.Rank(request, timeout=CALL_TIMEOUT_S)
                    self.assertEqual(len(r.items), len(candidates))
                    continue
                with self.assertRaises(grpc.RpcError) as e:
                    stub.Rank(request, timeout=CALL_TIMEOUT_S)
                self.assertEqual(e.exception.code(),
                                 grpc.StatusCode.FAILED_PRECONDITION, u)
                self.assertIn(f"belongs to shard {shard_of(u)} of {SHARDS}",
                              e.exception.details())
                self.assertIn(f"holds shard {s['shard']} of {SHARDS}",
                              e.exception.details())
                with self.assertRaises(grpc.RpcError) as e:
                    stub.Retrieve(ranking_pb2.RetrieveRequest(user_id=u, k=3),
                                  timeout=CALL_TIMEOUT_S)
                self.assertEqual(e.exception.code(),
                                 grpc.StatusCode.FAILED_PRECONDITION, u)
        # Through the proxy, every user of every shard is found.
        proxy = self.cluster.ranker()
        for u in users:
            r = proxy.Rank(ranking_pb2.RankRequest(user_id=u,
                                                   candidate_ids=candidates),
                           metadata=[("x-user-id", u)],
                           timeout=CALL_TIMEOUT_S)
            self.assertEqual(len(r.items), len(candidates))
        # Writes land where reads look: an upsert of another shard's user
        # is refused, one of the server's own shard is accepted.
        dim = self.m.manifest["dim"] * self.m.manifest["user_codes"]
        target = self.cluster.server(0, 0)
        admin = self.cluster.admin(target)
        foreign = next(u for u in split[1])
        with self.assertRaises(grpc.RpcError) as e:
            admin.UpsertUsers(iter([ranking_pb2.UserRecord(
                user_id=foreign, upe=[0.5] * dim)]), timeout=CALL_TIMEOUT_S)
        self.assertEqual(e.exception.code(),
                         grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn(f"holds shard 0 of {SHARDS}", e.exception.details())
        new_user = next(f"new-{i}" for i in range(1000)
                        if shard_of(f"new-{i}") == 0)
        r = admin.UpsertUsers(iter([ranking_pb2.UserRecord(
            user_id=new_user, upe=[0.5] * dim,
            queries=[0.25] * dim if self.m.manifest["user_queries"] else [])]),
            timeout=CALL_TIMEOUT_S)
        self.assertEqual(r.accepted, 1)


if __name__ == "__main__":
    unittest.main()
