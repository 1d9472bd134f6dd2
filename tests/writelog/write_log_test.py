"""Writes through the write log (NATS JetStream), with real processes.

Each test starts its own nats-server (JetStream, file store under the
test's temporary directory, loopback port) and embsum-server processes,
and stops them. Synchronised on events (log lines, metrics, answers),
never on sleeps; every wait is bounded.

Also the model-version and reload rules that hold without a log.
Environment (set by ctest): EMBSUM_SERVER, EMBSUM_INGEST, EMBSUM_DATAGEN;
PYTHONPATH holds the generated stubs and tests/fault (embsum_harness).
Exits 77 (skipped) when nats-server is not installed.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import grpc
import numpy as np

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server")
    else None)
if NATS_SERVER is None:
    print("SKIP: nats-server is not installed (tools/setup.sh installs it)")
    sys.exit(77)

import embsum_harness as h  # noqa: E402
from embsum.v1 import ranking_pb2  # noqa: E402
from embsum.v1 import write_log_pb2  # noqa: E402

WAIT_S = 60  # bound on every wait for an event
VERSION = "wl-1"


def wait_for(predicate, what, timeout=WAIT_S, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nats:
    """One nats-server with JetStream on loopback."""

    def __init__(self, work, name="n1", port=None):
        self.name = name
        self.port = port or free_port()
        self.store = os.path.join(work, f"nats-{name}")
        self.log_path = os.path.join(work, f"nats-{name}.log")
        self.proc = None

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", self.store, "-n", self.name],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or
                 "Server is ready" in self.read_log(), "nats-server ready")
        if self.proc.poll() is not None:
            raise AssertionError("nats-server exited:\n" + self.read_log())
        return self

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def publish_raw(self, subject, payload):
        """A core NATS publish (the NATS text protocol), confirmed by PONG:
        how a foreign or broken writer would put a message in the stream."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=10) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"INFO")
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n' +
                      f"PUB {subject} {len(payload)}\r\n".encode() +
                      payload + b"\r\nPING\r\n")
            while True:
                line = f.readline()
                if line.startswith(b"PONG"):
                    return
                if not line or line.startswith(b"-ERR"):
                    raise AssertionError(f"publish failed: {line!r}")


def _request_raw(self, subject, payload):
    """A NATS request (publish with a reply inbox, wait for the answer)."""
    with socket.create_connection(("127.0.0.1", self.port),
                                  timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"INFO")
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                  b"SUB _INBOX.t 1\r\n" +
                  f"PUB {subject} _INBOX.t {len(payload)}\r\n".encode() +
                  payload + b"\r\n")
        while True:
            line = f.readline()
            if not line or line.startswith(b"-ERR"):
                raise AssertionError(f"request failed: {line!r}")
            if line.startswith(b"MSG"):
                size = int(line.split()[-1])
                body = f.read(size + 2)[:size]
                if b'"error"' in body:
                    raise AssertionError(body.decode())
                return body


Nats.request_raw = _request_raw


def metrics(server):
    url = f"http://{server.metrics_listen}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric(server, name, **labels):
    """The value of one series, 0 when absent."""
    text = metrics(server)
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) \
            if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return 0.0


class Base(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="embsum-writelog-")
        self.servers = []
        self.nats = []
        self.model_dir = h.datagen(os.path.join(self.work, "model"),
                                   users=40, items=60, dim=8,
                                   model_version=VERSION)
        self.model = h.Model(self.model_dir)
        self.rng = np.random.default_rng(7)

    def tearDown(self):
        for s in self.servers:
            s.stop()
        for n in self.nats:
            n.stop()
        if os.environ.get("EMBSUM_KEEP_TEST_DIR"):
            print("kept", self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def data_dir(self, name, model_dir=None):
        data = os.path.join(self.work, name)
        r = h.ingest(model_dir or self.model_dir, data)
        self.assertEqual(r.returncode, 0, r.stderr)
        return data

    def start_server(self, data, name, extra=(), wait_caught_up=True):
        s = h.Server(data, os.path.join(self.work, f"{name}.log"),
                     extra=list(extra))
        self.servers.append(s)
        s.start()
        self.assertTrue(s.started, s.read_log())
        if wait_caught_up:
            wait_for(lambda: "event=write_log_caught_up" in s.read_log(),
                     f"{name} caught up with the log")
        return s

    def restart(self, server, name):
        again = h.Server(server.data_dir,
                         os.path.join(self.work, f"{name}.log"),
                         extra=server.args[len(h.Server(
                             server.data_dir, "").args):])
        self.servers.append(again)
        again.start()
        self.assertTrue(again.started, again.read_log())
        return again

    def new_item(self, item_id, version=""):
        cpe = self.rng.standard_normal((2, 8)).astype(np.float32)
        keys = (self.rng.standard_normal((2, 8)).astype(np.float32)
                if self.model.manifest["item_keys"] else None)
        r = h.item_record(item_id, cpe, keys)
        r.model_version = version
        return r, cpe, (keys if keys is not None else cpe)

    def new_user(self, user_id, version=""):
        upe = self.rng.standard_normal((2, 8)).astype(np.float32)
        queries = (self.rng.standard_normal((2, 8)).astype(np.float32)
                   if self.model.manifest["user_queries"] else None)
        r = h.user_record(user_id, upe, queries)
        r.model_version = version
        return r, upe, (queries if queries is not None else upe)

    def item_visible(self, server, item_id):
        user = self.model.user_ids[0]
        r = h.rank(server.ranker(), user, [item_id])
        return item_id not in r.unknown_item_ids

    def item_score(self, server, item_id):
        user = self.model.user_ids[0]
        r = h.rank(server.ranker(), user, [item_id])
        return h.scores_by_id(r).get(item_id)

    def user_known(self, server, user_id):
        try:
            h.rank(server.ranker(), user_id, [self.model.item_ids[0]])
            return True
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise


class ModelVersionTest(Base):
    """Item 4 and item 9 of issue 21, without a write log."""

    def test_upsert_of_another_model_version_is_refused_naming_both(self):
        server = self.start_server(self.data_dir("data"), "s",
                                   wait_caught_up=False)
        admin = server.admin()
        for call, record in (
                (admin.UpsertItems, self.new_item("i-new", "wl-2")[0]),
                (admin.UpsertUsers, self.new_user("u-new", "wl-2")[0])):
            with self.assertRaises(grpc.RpcError) as e:
                call(iter([record]), timeout=30)
            self.assertEqual(e.exception.code(),
                             grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("'wl-2'", e.exception.details())
            self.assertIn(f"'{VERSION}'", e.exception.details())
        self.assertFalse(self.item_visible(server, "i-new"))
        self.assertFalse(self.user_known(server, "u-new"))
        # Empty means the served version; naming it is the same.
        for version in ("", VERSION):
            ack = admin.UpsertItems(
                iter([self.new_item(f"i-{version}", version)[0]]), timeout=30)
            self.assertEqual((ack.accepted, ack.log_sequence), (1, 0))
            self.assertTrue(self.item_visible(server, f"i-{version}"))
            ack = admin.UpsertUsers(
                iter([self.new_user(f"u-{version}", version)[0]]), timeout=30)
            self.assertEqual(ack.accepted, 1)
            self.assertTrue(self.user_known(server, f"u-{version}"))

    def test_reload_refuses_same_version_and_counts_drops_of_another(self):
        data = self.data_dir("data")
        server = self.start_server(data, "s", wait_caught_up=False)
        admin = server.admin()
        admin.UpsertItems(iter([self.new_item("online-item")[0]]), timeout=30)
        admin.UpsertUsers(iter([self.new_user("online-user")[0]]), timeout=30)
        # The same version again: the reload would lose both writes.
        same = h.datagen(os.path.join(self.work, "same"), users=40, items=60,
                         dim=8, seed=5, model_version=VERSION)
        r = h.ingest(same, data, force=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        server.proc.send_signal(signal.SIGHUP)
        line = wait_for(lambda: next(
            (l for l in server.read_log().splitlines()
             if "event=reload_failed" in l), None), "the refused reload")
        self.assertIn("2 online writes", line)
        self.assertTrue(self.item_visible(server, "online-item"))
        self.assertTrue(self.user_known(server, "online-user"))
        self.assertEqual(metric(server, "embsum_reload_dropped_writes_total"),
                         0)
        # Another version: reloaded, and the drop is said.
        other = h.datagen(os.path.join(self.work, "other"), users=40,
                          items=60, dim=8, seed=6, model_version="wl-2")
        r = h.ingest(other, data, force=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        server.proc.send_signal(signal.SIGHUP)
        line = wait_for(lambda: next(
            (l for l in server.read_log().splitlines()
             if "event=reload " in l + " "), None), "the reload")
        self.assertIn("dropped_online_writes=2", line)
        self.assertIn("model_version=wl-2", line)
        self.assertEqual(metric(server, "embsum_reload_dropped_writes_total"),
                         2)
        self.assertFalse(self.item_visible(server, "online-item"))


class WriteLogTest(Base):
    """Items 1-3 and 6 of issue 21 on one JetStream node (R=1)."""

    def setUp(self):
        super().setUp()
        self.node = Nats(self.work).start()
        self.nats.append(self.node)

    def log_flags(self, *extra):
        return [f"--write_log={self.node.url}", "--write_log_replicas=1",
                "--write_log_timeout=2s", *extra]

    def two_servers(self, *extra):
        a = self.start_server(self.data_dir("a"), "a", self.log_flags(*extra))
        b = self.start_server(self.data_dir("b"), "b", self.log_flags(*extra))
        return a, b

    def test_publish_apply_visible_on_both_servers(self):
        a, b = self.two_servers()
        item, cpe, keys = self.new_item("i-log")
        ack = a.admin().UpsertItems(iter([item]), timeout=30)
        self.assertEqual(ack.accepted, 1)
        self.assertGreater(ack.log_sequence, 0)
        user, upe, queries = self.new_user("u-log")
        ack2 = b.admin().UpsertUsers(iter([user]), timeout=30)
        self.assertGreater(ack2.log_sequence, ack.log_sequence)
        want = h.score(*self.model.user(self.model.user_ids[0]), cpe, keys)
        for s in (a, b):
            wait_for(lambda: self.item_visible(s, "i-log"), "the item")
            self.assertAlmostEqual(self.item_score(s, "i-log"), want,
                                   delta=1e-4 * max(1, abs(want)))
            wait_for(lambda: self.user_known(s, "u-log"), "the user")
        # A bad record: INVALID_ARGUMENT, and nothing is published (the next
        # write takes the very next sequence).
        bad = ranking_pb2.ItemRecord(item_id="bad", cpe=[1.0])
        with self.assertRaises(grpc.RpcError) as e:
            a.admin().UpsertItems(iter([self.new_item("ok")[0], bad]),
                                  timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        deleted = a.admin().DeleteItems(
            ranking_pb2.DeleteItemsRequest(item_ids=["i-log"]), timeout=30)
        self.assertEqual(deleted.log_sequence, ack2.log_sequence + 1)
        for s in (a, b):
            wait_for(lambda: not self.item_visible(s, "i-log"), "the delete")
            self.assertFalse(self.item_visible(s, "ok"))
        # Another model version is refused by the RPC with the log too.
        with self.assertRaises(grpc.RpcError) as e:
            a.admin().UpsertItems(iter([self.new_item("v2", "wl-2")[0]]),
                                  timeout=30)
        self.assertEqual(e.exception.code(),
                         grpc.StatusCode.FAILED_PRECONDITION)
        self.assertGreaterEqual(metric(
            b, "embsum_write_log_applied_sequence", lane="items"),
            deleted.log_sequence)

    def test_call_larger_than_a_message_is_applied_whole(self):
        a, b = self.two_servers("--write_log_max_message_bytes=8192")
        records = [self.new_item(f"big-{i}")[0] for i in range(200)]
        ack = a.admin().UpsertItems(iter(records), timeout=60)
        self.assertEqual(ack.accepted, 200)
        # The first write of the stream: its commit comes after its parts.
        self.assertGreater(ack.log_sequence, 2)
        for s in (a, b):
            wait_for(lambda: self.item_visible(s, "big-199"), "the call")
            # All of it at once: the first record is there too.
            self.assertTrue(self.item_visible(s, "big-0"))
            self.assertEqual(metric(s, "embsum_write_log_messages_total",
                                    lane="items", result="applied",
                                    reason="upsert"), 1)

    def test_restarted_replica_catches_up_before_serving(self):
        a, b = self.two_servers()
        b.kill()
        acks = []
        for i in range(30):
            acks.append(a.admin().UpsertItems(
                iter([self.new_item(f"while-down-{i}")[0]]), timeout=30))
            acks.append(a.admin().UpsertUsers(
                iter([self.new_user(f"user-down-{i}")[0]]), timeout=30))
        b2 = self.restart(b, "b2")
        wait_for(lambda: "event=write_log_caught_up" in b2.read_log(),
                 "b2 caught up")
        # Caught up before SERVING: everything acknowledged is there now.
        for i in range(30):
            self.assertTrue(self.item_visible(b2, f"while-down-{i}"))
            self.assertTrue(self.user_known(b2, f"user-down-{i}"))
        self.assertEqual(metric(b2, "embsum_write_log_applied_sequence",
                                lane="items"),
                         max(x.log_sequence for x in acks[0::2]))
        # It resumed after what it had applied: nothing applied twice.
        self.assertEqual(metric(b2, "embsum_write_log_messages_total",
                                lane="items", result="applied",
                                reason="upsert"), 30)

    def test_sigkill_while_applying_loses_nothing_and_keeps_order(self):
        a, b = self.two_servers()
        b.kill()
        # Behind by 400 messages: b2 is killed while it catches up.
        last = {}
        acks = []
        for i in range(400):
            item_id = "hot" if i % 4 == 0 else f"cold-{i}"
            record, cpe, keys = self.new_item(item_id)
            last[item_id] = (cpe, keys)
            acks.append(a.admin().UpsertItems(iter([record]), timeout=30))
        final = acks[-1].log_sequence
        b2 = self.restart(b, "b2")
        wait_for(lambda: "event=write_log_subscribed lane=items"
                 in b2.read_log(), "b2 applying")
        b2.kill()
        b3 = self.restart(b, "b3")
        wait_for(lambda: "event=write_log_caught_up" in b3.read_log(),
                 "b3 caught up")
        self.assertEqual(metric(b3, "embsum_write_log_applied_sequence",
                                lane="items"), final)
        user = self.model.user(self.model.user_ids[0])
        for item_id, (cpe, keys) in last.items():
            want = h.score(*user, cpe, keys)
            self.assertAlmostEqual(self.item_score(b3, item_id), want,
                                   delta=1e-4 * max(1, abs(want)),
                                   msg=item_id)
        self.assertEqual(metric(b3, "embsum_write_log_messages_total",
                                lane="items", result="failed",
                                reason="store"), 0)

    def test_a_truncated_log_is_reported(self):
        a, b = self.two_servers()
        b.kill()
        for i in range(5):
            a.admin().UpsertItems(iter([self.new_item(f"gone-{i}")[0]]),
                                  timeout=30)
        # JetStream's purge API, asked as any NATS client would.
        self.node.request_raw("$JS.API.STREAM.PURGE.EMBSUM", b"")
        a.admin().UpsertItems(iter([self.new_item("kept")[0]]), timeout=30)
        b2 = self.restart(b, "b2")
        wait_for(lambda: "event=write_log_caught_up" in b2.read_log(),
                 "b2 caught up")
        self.assertTrue(self.item_visible(b2, "kept"))
        self.assertIn("event=write_log_truncated lane=items from_sequence=1 "
                      "first_in_stream=6", b2.read_log())
        self.assertEqual(metric(b2, "embsum_write_log_messages_total",
                                lane="items", result="failed",
                                reason="truncated_log"), 1)

    def test_replica_from_an_artifact_resumes_after_its_log_sequence(self):
        a = self.start_server(self.data_dir("a"), "a", self.log_flags())
        first = a.admin().UpsertItems(iter([self.new_item("in-artifact")[0]]),
                                      timeout=30)
        a.admin().UpsertItems(iter([self.new_item("after-artifact")[0]]),
                              timeout=30)
        # An artifact cut after the first write says so in its manifest.
        cut = os.path.join(self.work, "cut")
        shutil.copytree(self.model_dir, cut)
        manifest = os.path.join(cut, "manifest.json")
        with open(manifest) as f:
            text = f.read()
        with open(manifest, "w") as f:
            f.write(text.replace('"model_version"',
                                 f'"log_sequence": {first.log_sequence}, '
                                 '"model_version"', 1))
        c = self.start_server(self.data_dir("c", cut), "c", self.log_flags())
        self.assertTrue(self.item_visible(c, "after-artifact"))
        # Not in this artifact really, but it says so: not applied again.
        self.assertFalse(self.item_visible(c, "in-artifact"))
        self.assertIn(f"from_sequence={first.log_sequence + 1}", c.read_log())

    def test_poison_and_other_version_messages_are_skipped_and_counted(self):
        a, b = self.two_servers()
        self.node.publish_raw("EMBSUM.items", b"\xff\x00 not a LogWrite")
        other = write_log_pb2.LogWrite(model_version="wl-2")
        other.items.records.append(self.new_item("of-v2", "wl-2")[0])
        self.node.publish_raw("EMBSUM.items", other.SerializeToString())
        ack = a.admin().UpsertItems(iter([self.new_item("after")[0]]),
                                    timeout=30)
        for s in (a, b):
            wait_for(lambda: self.item_visible(s, "after"), "the later write")
            self.assertFalse(self.item_visible(s, "of-v2"))
            self.assertEqual(metric(s, "embsum_write_log_messages_total",
                                    lane="items", result="failed",
                                    reason="decode"), 1)
            self.assertEqual(metric(s, "embsum_write_log_messages_total",
                                    lane="items", result="skipped",
                                    reason="model_version"), 1)
            self.assertIn(f"sequence={ack.log_sequence - 2}", s.read_log())

    def test_nats_down_fails_writes_fast_and_reads_go_on(self):
        a, b = self.two_servers()
        a.admin().UpsertItems(iter([self.new_item("before")[0]]), timeout=30)
        wait_for(lambda: self.item_visible(b, "before"), "the first write")
        self.node.kill()
        start = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            # The deadline is far beyond --write_log_timeout: the answer is
            # the server's own UNAVAILABLE, not the client giving up.
            a.admin().UpsertItems(iter([self.new_item("during")[0]]),
                                  timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertLess(time.monotonic() - start, 25)
        # Reads go on, and the lag grows.
        self.assertTrue(self.item_visible(b, "before"))
        first = wait_for(lambda: metric(b, "embsum_write_log_lag_seconds",
                                        lane="items"), "a lag")
        wait_for(lambda: metric(b, "embsum_write_log_lag_seconds",
                                lane="items") > first, "the lag to grow")
        # NATS back (same store, same port): writes work, replicas apply.
        self.node = Nats(self.work, port=self.node.port).start()
        self.nats.append(self.node)

        def write():
            try:
                return a.admin().UpsertItems(
                    iter([self.new_item("after")[0]]), timeout=30)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    return None
                raise
        wait_for(write, "a write once NATS is back")
        for s in (a, b):
            wait_for(lambda: self.item_visible(s, "after"), "catch-up")
        wait_for(lambda: metric(b, "embsum_write_log_lag_seconds",
                                lane="items") < first, "the lag to fall")


if __name__ == "__main__":
    unittest.main()
