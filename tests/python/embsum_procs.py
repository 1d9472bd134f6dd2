"""Real processes for the tests of python/embsum: embsum-datagen,
embsum-ingest and embsum-server as children on loopback.

The server is synchronised on events, never on sleeps: its log is read line
by line from a pipe until the `event=start` line gives the bound ports, then
grpc.health.v1 is asked (with wait_for_ready) until it says SERVING. stop()
sends SIGTERM and waits for the exit.

Binaries come from the environment ctest sets: EMBSUM_SERVER, EMBSUM_INGEST,
EMBSUM_DATAGEN, EMBSUM_EVAL.
"""
import os
import re
import signal
import subprocess
import threading

from embsum.client import Admin, Ranker

SERVER = os.environ.get("EMBSUM_SERVER", "")
INGEST = os.environ.get("EMBSUM_INGEST", "")
DATAGEN = os.environ.get("EMBSUM_DATAGEN", "")
EVAL = os.environ.get("EMBSUM_EVAL", "")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def datagen(out, users, items, dim=8, user_codes=2, item_codes=2, seed=1,
            impressions=10, impression_size=4, extra=()):
    subprocess.run([DATAGEN, f"--out={out}", f"--users={users}",
                    f"--items={items}", f"--dim={dim}",
                    f"--user_codes={user_codes}",
                    f"--item_codes={item_codes}", f"--seed={seed}",
                    f"--impressions={impressions}",
                    f"--impression_size={impression_size}", *extra],
                   check=True, capture_output=True, timeout=120)
    return out


def ingest(model, data, extra=(), check=True):
    p = subprocess.run([INGEST, f"--model_dir={model}", f"--data_dir={data}",
                        *extra], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise RuntimeError(f"embsum-ingest failed: {p.stderr}")
    return p


def _field(line, key):
    m = re.search(r"\b" + key + r'=("(?:[^"\\]|\\.)*"|\S+)', line)
    if not m:
        return None
    v = m.group(1)
    return v[1:-1] if v.startswith('"') else v


class Server:
    """embsum-server on ephemeral loopback ports.

    with Server(data_dir) as s:   # started and SERVING
        s.ranker().rank(...)
    """

    def __init__(self, data_dir, extra=(), start_timeout=120):
        self.args = [SERVER, f"--data_dir={data_dir}",
                     "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                     "--metrics_listen=127.0.0.1:0", "--workers=2", *extra]
        self.start_timeout = start_timeout
        self.lines = []
        self._started = threading.Event()
        self._clients = []
        self.proc = None

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if " event=start " in line and not self._started.is_set():
                self.start_line = line
                self._started.set()
        self._started.set()  # exited: wake the waiter

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._started.wait(self.start_timeout) or \
                not hasattr(self, "start_line"):
            self.stop()
            raise RuntimeError("embsum-server did not start:\n" + self.log())
        self.listen = _field(self.start_line, "listen")
        self.admin_listen = _field(self.start_line, "admin_listen")
        self.ranker().wait_until_serving(timeout=self.start_timeout)
        return self

    def log(self):
        return "".join(self.lines)

    def ranker(self, **kw):
        c = Ranker(self.listen, **kw)
        self._clients.append(c)
        return c

    def admin(self, **kw):
        c = Admin(self.admin_listen, **kw)
        self._clients.append(c)
        return c

    def stop(self):
        for c in self._clients:
            c.close()
        self._clients = []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._reader.join(timeout=10)
            self.proc.stdout.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
