"""Run an embsum-server on this machine for examples, notebooks and tests:
started on ephemeral loopback ports, ready when it says so (its start line
gives the ports, then grpc.health.v1 reports SERVING: no sleeps), stopped
with SIGTERM.

    from embsum.local import Server
    with Server("/path/to/embsum-server", "data") as s:
        s.ranker().rank("U1", ["N1", "N2"])
"""
import re
import signal
import subprocess
import threading

from embsum.client import Admin, Ranker


def _field(line, key):
    m = re.search(r"\b" + key + r'=("(?:[^"\\]|\\.)*"|\S+)', line)
    if not m:
        return None
    v = m.group(1)
    return v[1:-1] if v.startswith('"') else v


class Server:
    """embsum-server on ephemeral loopback ports.

    with Server(binary, data_dir) as s:   # started and SERVING
        s.ranker().rank(...)
    """

    def __init__(self, binary, data_dir, extra=(), start_timeout=120,
                 tls=None):
        """tls: the embsum.client.TLS the clients of ranker() and admin()
        (and the readiness check) use, for a server started with
        --tls_cert and friends in `extra`."""
        self.tls = tls
        self.args = [binary, f"--data_dir={data_dir}",
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
        kw.setdefault("tls", self.tls)
        c = Ranker(self.listen, **kw)
        self._clients.append(c)
        return c

    def admin(self, **kw):
        kw.setdefault("tls", self.tls)
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
