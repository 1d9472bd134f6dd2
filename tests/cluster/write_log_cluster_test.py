"""Writes through the write log on a real cluster: 3 NATS JetStream nodes
(stream R=3), 2 shards x 2 replicas of embsum-server behind HAProxy, all
started by tools/embsum-local-cluster --write_log on loopback.

While one server replica and one NATS node are SIGKILLed and restarted, a
writer sends each write once, to any live replica's admin port; Rank load
runs through the proxy. Afterwards every acknowledged write is on every
replica of its shard, both replicas of a shard score alike, and no read
through the proxy failed. Synchronised on events (acks, metrics, HAProxy's
view), never on sleeps; every wait is bounded.

Exits 77 (skipped) without haproxy or nats-server.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

if shutil.which("nats-server") is None and not os.path.exists(
        "/usr/sbin/nats-server"):
    print("SKIP: nats-server is not installed (tools/setup.sh installs it)")
    sys.exit(77)

import cluster_test as ct  # noqa: E402  (exits 77 without haproxy)
import embsum_harness as harness  # noqa: E402
from embsum.v1 import ranking_pb2  # noqa: E402

USER_WRITES = int(os.environ.get("EMBSUM_WL_USER_WRITES", "2000"))
ITEM_WRITES = int(os.environ.get("EMBSUM_WL_ITEM_WRITES", "500"))


def metric(metrics_listen, name, **labels):
    url = f"http://{metrics_listen}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    want = sorted(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m.group(1) == name and sorted(
                (m.group(2) or "").split(",") if m.group(2) else []) == want:
            return float(m.group(3))
    return 0.0


class WriteLogClusterTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="embsum-wlcluster-")
        self.model = harness.datagen(os.path.join(self.tmp, "model"),
                                     users=ct.USERS, items=ct.ITEMS,
                                     model_version="v1")
        self.m = harness.Model(self.model)
        self.cluster = ct.LocalCluster(self.model, os.path.join(self.tmp, "w"),
                                       extra=["--write_log"])
        self.restarted = []  # processes this test started

    def tearDown(self):
        for p in self.restarted:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        code = self.cluster.stop()
        output = self.cluster.output()
        pids = self.cluster.pids() + [p.pid for p in self.restarted]
        if (code == 0 and not any(ct.alive(p) for p in pids) and
                not os.environ.get("EMBSUM_KEEP_TEST_DIR")):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("kept", self.tmp)
        self.assertEqual(code, 0, output)

    def restart(self, argv, log_path):
        out = open(log_path, "a")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        out.close()
        self.restarted.append(p)
        return p

    def test_writes_survive_sigkill_of_a_replica_and_a_nats_node(self):
        rng = random.Random(5)
        servers = self.cluster.servers
        dim, m, n = 8, 2, 2
        down = set()  # indexes of servers not to write to
        lock = threading.Lock()
        acked_users = {}  # user id -> record
        items = {}  # item id -> record, or None once deleted
        max_seq = {"items": 0, 0: 0, 1: 0}

        def upe(rows):
            return [rng.uniform(-1, 1) for _ in range(rows * dim)]

        def send(call, shard, make_request):
            """Once to a live replica (of `shard` unless None); retried on
            UNAVAILABLE (the answer then says nothing was written, or the
            write is idempotent). Returns the ack."""
            deadline = time.monotonic() + ct.WAIT_S
            while time.monotonic() < deadline:
                with lock:
                    live = [i for i, s in enumerate(servers)
                            if i not in down and
                            (shard is None or s["shard"] == shard)]
                s = servers[rng.choice(live)]
                stub = self.cluster.admin(s)
                try:
                    return getattr(stub, call)(make_request(), timeout=30)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    # NATS fails over (client reconnect, new stream leader):
                    # poll for it as wait_for does.
                    time.sleep(0.02)
            raise AssertionError(f"{call}: no live replica took the write")

        load = ct.Load(self.cluster.ranker(), self.m.user_ids,
                       self.m.item_ids, threads=2)
        victim = self.cluster.server(1, 1)
        victim_index = servers.index(victim)
        nats_victim = self.cluster.info["nats"][1]
        try:
            total = USER_WRITES + ITEM_WRITES
            for w in range(total):
                if w == total // 4:
                    with lock:
                        down.add(victim_index)
                    os.kill(victim["pid"], signal.SIGKILL)
                    os.kill(nats_victim["pid"], signal.SIGKILL)
                if w == total // 2:
                    self.restart(nats_victim["argv"],
                                 nats_victim["log"])
                    self.restart(victim["argv"], victim["log"])
                    with lock:
                        down.discard(victim_index)
                if w % 5 == 4 and ITEM_WRITES:
                    k = w // 5
                    live = [i for i, r in items.items() if r is not None]
                    if k % 5 == 4 and live:
                        item_id = rng.choice(live)
                        ack = send("DeleteItems", None,
                                   lambda: ranking_pb2.DeleteItemsRequest(
                                       item_ids=[item_id]))
                        items[item_id] = None
                    else:
                        item_id = f"wl-item-{k % 300}"
                        record = ranking_pb2.ItemRecord(
                            item_id=item_id, cpe=upe(n), keys=(
                                upe(n) if self.m.manifest["item_keys"]
                                else []))
                        ack = send("UpsertItems", None,
                                   lambda: iter([record]))
                        items[item_id] = record
                    max_seq["items"] = max(max_seq["items"],
                                           ack.log_sequence)
                else:
                    user_id = f"wl-user-{w}"
                    shard = ct.shard_of(user_id)
                    record = ranking_pb2.UserRecord(
                        user_id=user_id, upe=upe(m),
                        queries=(upe(m) if self.m.manifest["user_queries"]
                                 else []))
                    ack = send("UpsertUsers", shard, lambda: iter([record]))
                    acked_users[user_id] = record
                    max_seq[shard] = max(max_seq[shard], ack.log_sequence)
                self.assertGreater(ack.log_sequence, 0)
            # Every replica reaches the last acknowledged sequences.
            for s in servers:
                ct.wait_for(lambda: metric(
                    s["metrics_listen"], "embsum_write_log_applied_sequence",
                    lane="items") >= max_seq["items"] and metric(
                    s["metrics_listen"], "embsum_write_log_applied_sequence",
                    lane="users") >= max_seq[s["shard"]],
                    f"shard {s['shard']} replica {s['replica']} caught up",
                    timeout=120)
        finally:
            load.stop()
        self.assertEqual(load.failures, [], "reads through the proxy failed")

        candidates = [i for i, r in items.items() if r is not None][:50]
        gone = [i for i, r in items.items() if r is None][:50]
        sample = rng.sample(sorted(acked_users), min(200, len(acked_users)))
        for shard in range(ct.SHARDS):
            replicas = [ct.LocalCluster.ranker(self.cluster, s["listen"])
                        for s in servers if s["shard"] == shard]
            # Every acknowledged user of the shard, on every replica.
            for user_id in acked_users:
                if ct.shard_of(user_id) != shard:
                    continue
                answers = []
                for stub in replicas:
                    r = stub.Rank(ranking_pb2.RankRequest(
                        user_id=user_id,
                        candidate_ids=(candidates + gone
                                       if user_id in sample else
                                       candidates[:1])),
                        timeout=ct.CALL_TIMEOUT_S)
                    answers.append(r)
                for r in answers:
                    self.assertEqual(sorted(r.unknown_item_ids),
                                     sorted(gone if user_id in sample
                                            else []))
                if user_id in sample:
                    self.assertEqual(
                        [(i.item_id, i.score) for i in answers[0].items],
                        [(i.item_id, i.score) for i in answers[1].items],
                        f"replicas of shard {shard} differ for {user_id}")
        # Nothing was skipped or failed on the way.
        for s in servers:
            for result in ("failed",):
                for reason in ("decode", "invalid", "store", "missing_part"):
                    for lane in ("users", "items"):
                        self.assertEqual(metric(
                            s["metrics_listen"],
                            "embsum_write_log_messages_total", lane=lane,
                            result=result, reason=reason), 0)

    def test_all_nats_down_fails_writes_fast_reads_go_on_then_catch_up(self):
        servers = self.cluster.servers
        item = ranking_pb2.ItemRecord(
            item_id="before", cpe=[0.1] * 16,
            keys=[0.2] * 16 if self.m.manifest["item_keys"] else [])
        first = self.cluster.admin(servers[0]).UpsertItems(iter([item]),
                                                           timeout=30)
        load = ct.Load(self.cluster.ranker(), self.m.user_ids,
                       self.m.item_ids, threads=2)
        try:
            for node in self.cluster.info["nats"]:
                os.kill(node["pid"], signal.SIGKILL)
            with self.assertRaises(grpc.RpcError) as e:
                # The server's own UNAVAILABLE, well before this deadline.
                self.cluster.admin(servers[1]).UpsertItems(
                    iter([item]), timeout=30)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # Reads go on; the lag grows on every replica.
            at_kill = load.answered()
            ct.wait_for(lambda: load.answered() > at_kill + 100,
                        "reads with NATS down")
            for s in servers:
                lag = metric(s["metrics_listen"],
                             "embsum_write_log_lag_seconds", lane="items")
                ct.wait_for(lambda: metric(
                    s["metrics_listen"], "embsum_write_log_lag_seconds",
                    lane="items") > lag, "the lag to grow")
            for node in self.cluster.info["nats"]:
                self.restart(node["argv"], node["log"])
            item.item_id = "after"
            acks = []

            def write():
                try:
                    acks.append(self.cluster.admin(servers[2]).UpsertItems(
                        iter([item]), timeout=30))
                    return True
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.UNAVAILABLE:
                        return False
                    raise
            ct.wait_for(write, "a write once NATS is back", timeout=120)
            self.assertGreater(acks[0].log_sequence, first.log_sequence)
            for s in servers:
                ct.wait_for(lambda: metric(
                    s["metrics_listen"], "embsum_write_log_applied_sequence",
                    lane="items") >= acks[0].log_sequence,
                    f"shard {s['shard']} replica {s['replica']} catch-up",
                    timeout=120)
        finally:
            load.stop()
        self.assertEqual(load.failures, [], "reads through the proxy failed")

    def test_new_replica_from_the_artifact_alone_reaches_its_peers(self):
        rng = random.Random(9)
        servers = self.cluster.servers
        shard0 = [s for s in servers if s["shard"] == 0]
        users = [u for u in (f"new-{i}" for i in range(200))
                 if ct.shard_of(u) == 0][:40]
        for u in users:
            self.cluster.admin(shard0[0]).UpsertUsers(iter([
                ranking_pb2.UserRecord(
                    user_id=u, upe=[rng.uniform(-1, 1) for _ in range(16)],
                    queries=([rng.uniform(-1, 1) for _ in range(16)]
                             if self.m.manifest["user_queries"] else []))]),
                timeout=30)
        items = [f"new-item-{i}" for i in range(20)]
        last = None
        for i in items:
            last = self.cluster.admin(servers[-1]).UpsertItems(iter([
                ranking_pb2.ItemRecord(
                    item_id=i, cpe=[rng.uniform(-1, 1) for _ in range(16)],
                    keys=([rng.uniform(-1, 1) for _ in range(16)]
                          if self.m.manifest["item_keys"] else []))]),
                timeout=30)
        self.cluster.admin(servers[0]).DeleteItems(
            ranking_pb2.DeleteItemsRequest(item_ids=items[:5]), timeout=30)
        # A fifth server: shard 0 from the artifact alone, on the log.
        data = os.path.join(self.tmp, "new-replica")
        r = subprocess.run(
            [harness.INGEST, f"--model_dir={self.model}",
             f"--data_dir={data}", f"--shards={ct.SHARDS}", "--shard=0"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        argv = [a for a in shard0[0]["argv"] if not a.startswith(
            ("--data_dir=", "--listen=", "--admin_listen=",
             "--metrics_listen="))]
        argv += [f"--data_dir={data}", "--listen=127.0.0.1:0",
                 "--admin_listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0"]
        log = os.path.join(self.tmp, "new-replica.log")
        self.restart(argv, log)

        def started():
            with open(log, errors="replace") as f:
                text = f.read()
            if "event=write_log_caught_up" not in text:
                return None
            return next(l for l in text.splitlines() if " event=start " in l)
        ct.wait_for(lambda: started() is not None,
                    "the new replica caught up")
        listen = harness._field(started(), "listen")
        fresh = self.cluster.ranker(listen)
        peer = self.cluster.ranker(shard0[1]["listen"])
        for u in users:
            request = ranking_pb2.RankRequest(user_id=u, candidate_ids=items)
            a = fresh.Rank(request, timeout=ct.CALL_TIMEOUT_S)
            b = peer.Rank(request, timeout=ct.CALL_TIMEOUT_S)
            self.assertEqual(sorted(a.unknown_item_ids), sorted(items[:5]))
            self.assertEqual([(i.item_id, i.score) for i in a.items],
                             [(i.item_id, i.score) for i in b.items], u)
        self.assertGreater(last.log_sequence, 0)


if __name__ == "__main__":
    unittest.main()
