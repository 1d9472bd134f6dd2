"""Real processes for the fault and security tests: embsum-datagen,
embsum-ingest and embsum-server started as children, plus a numpy reference
of the scoring function (docs/design.md section 2) to check what a server returns.

Binaries come from the environment ctest sets: EMBSUM_SERVER, EMBSUM_INGEST,
EMBSUM_DATAGEN; PYTHONPATH holds the generated embsum.v1 stubs.
"""
import json
import os
import re
import signal
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc
import numpy as np

from embsum.v1 import ranking_pb2
from embsum.v1 import ranking_pb2_grpc

SERVER = os.environ["EMBSUM_SERVER"]
INGEST = os.environ["EMBSUM_INGEST"]
DATAGEN = os.environ["EMBSUM_DATAGEN"]


def datagen(out, users, items, dim=8, user_codes=2, item_codes=2, seed=1,
            model_version=None):
    """Writes a model artifact with embsum-datagen (no impressions needed)."""
    args = [DATAGEN, f"--out={out}", f"--users={users}", f"--items={items}",
            f"--dim={dim}", f"--user_codes={user_codes}",
            f"--item_codes={item_codes}", f"--seed={seed}",
            "--impression_size=2"]
    if model_version:
        args.append(f"--model_version={model_version}")
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    return out


def ingest(model, data, force=False, timeout=120):
    """Runs embsum-ingest to completion; returns the CompletedProcess."""
    args = [INGEST, f"--model_dir={model}", f"--data_dir={data}"]
    if force:
        args.append("--force")
    return subprocess.run(args, capture_output=True, text=True,
                          timeout=timeout)


class Model:
    """A model artifact read with numpy, and the reference scorer."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.version = self.manifest["model_version"]

        self.user_ids = _read_ids(os.path.join(model_dir, "users/ids.txt"))
        self.item_ids = _read_ids(os.path.join(model_dir, "items/ids.txt"))
        load = lambda p: np.load(os.path.join(model_dir, p)).astype(np.float64)
        self.upe = load("users/upe.npy")
        self.queries = (load("users/queries.npy")
                        if self.manifest["user_queries"] else self.upe)
        self.cpe = load("items/cpe.npy")
        self.keys = (load("items/keys.npy")
                     if self.manifest["item_keys"] else self.cpe)
        self.user_row = {u: i for i, u in enumerate(self.user_ids)}
        self.item_row = {u: i for i, u in enumerate(self.item_ids)}

    def item(self, item_id):
        r = self.item_row[item_id]
        return self.cpe[r], self.keys[r]

    def user(self, user_id):
        r = self.user_row[user_id]
        return self.upe[r], self.queries[r]


def _read_ids(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line]


def score(a, q, b, g):
    """EmbSum relevance of user (A, Q) and item (B, G), float64."""
    k = a @ b.T
    logits = q @ g.T
    w = np.exp(logits - logits.max())
    w /= w.sum()
    return float((w * k).sum())


def _field(line, key):
    m = re.search(key + r'=("(?:[^"\\]|\\.)*"|\S+)', line)
    if not m:
        return None
    value = m.group(1)
    return value[1:-1] if value.startswith('"') else value


class Server:
    """embsum-server on ephemeral loopback ports, its log in `log_path`.

    start() waits for event=start; if the process exits first, `exit_code`
    holds its status and `started` is False (a refusal at start-up).
    """

    def __init__(self, data_dir, log_path, extra=(), env=None, cwd=None):
        self.data_dir = data_dir
        self.log_path = log_path
        self.args = [SERVER, f"--data_dir={data_dir}",
                     "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                     "--metrics_listen=127.0.0.1:0", "--workers=2",
                     *extra]
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.started = False
        self.exit_code = None
        self.channels = []

    def start(self, timeout=120):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self._start_line()
            if line:
                self.started = True
                self.listen = _field(line, "listen")
                self.admin_listen = _field(line, "admin_listen")
                self.metrics_listen = _field(line, "metrics_listen")
                self.model_version = _field(line, "model_version")
                return self
            code = self.proc.poll()
            if code is not None:
                self.exit_code = code
                return self
            time.sleep(0.05)
        raise RuntimeError("server neither started nor exited:\n" +
                           self.read_log())

    def _start_line(self):
        for line in self.read_log().splitlines():
            if "event=start " in line + " " and "event=start_failed" not in line:
                return line
        return None

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def channel(self, target=None):
        ch = grpc.insecure_channel(
            target or self.listen,
            options=[("grpc.max_send_message_length", 64 << 20),
                     ("grpc.max_receive_message_length", 64 << 20)])
        self.channels.append(ch)
        return ch

    def ranker(self, target=None):
        return ranking_pb2_grpc.RankerStub(self.channel(target))

    def admin(self, target=None):
        return ranking_pb2_grpc.RankerAdminStub(
            self.channel(target or self.admin_listen))

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait()

    def wait(self, timeout=60):
        if self.proc is None:
            return None
        self.exit_code = self.proc.wait(timeout=timeout)
        return self.exit_code

    def stop(self):
        for ch in self.channels:
            ch.close()
        self.channels = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


def rank(stub, user_id, candidates, timeout=30):
    return stub.Rank(ranking_pb2.RankRequest(user_id=user_id,
                                             candidate_ids=candidates),
                     timeout=timeout)


def scores_by_id(response):
    return {item.item_id: item.score for item in response.items}


def user_record(user_id, upe, queries=None, summary=""):
    r = ranking_pb2.UserRecord(user_id=user_id, summary=summary)
    r.upe.extend(np.asarray(upe, np.float32).ravel().tolist())
    if queries is not None:
        r.queries.extend(np.asarray(queries, np.float32).ravel().tolist())
    return r


def item_record(item_id, cpe, keys=None):
    r = ranking_pb2.ItemRecord(item_id=item_id)
    r.cpe.extend(np.asarray(cpe, np.float32).ravel().tolist())
    if keys is not None:
        r.keys.extend(np.asarray(keys, np.float32).ravel().tolist())
    return r


class ModelTestCase(unittest.TestCase):
    """A test case over one small ingested model: the class builds it once
    (MODEL: datagen's arguments) into a temporary root; each test gets a
    fresh work folder, may copy the pristine data directory with
    data_copy(), and every Server it appends to self.servers is stopped at
    the end."""

    PREFIX = "embsum-test-"
    MODEL = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix=cls.PREFIX)
        cls.root = cls.tmp.name
        cls.model_dir = datagen(os.path.join(cls.root, "model"), **cls.MODEL)
        cls.model = Model(cls.model_dir)
        cls.pristine = os.path.join(cls.root, "pristine")
        r = ingest(cls.model_dir, cls.pristine)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.work = tempfile.mkdtemp(dir=self.root)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def data_copy(self, name="data"):
        """A copy of the pristine data directory under this test's folder."""
        path = os.path.join(self.work, name)
        shutil.copytree(self.pristine, path)
        return path
