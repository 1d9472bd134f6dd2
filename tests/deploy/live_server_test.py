"""Runs the real embsum-server (--demo) with the arguments of the CPU
Deployment and checks what the manifests, rules and dashboard assume of it:
the native gRPC probes' health check answers SERVING on the --listen port,
/metrics passes `promtool check metrics` and has every series the rules and
the dashboard read, and on SIGTERM health turns NOT_SERVING while calls are
still served for --shutdown_delay, then the server exits 0.

Requests are built by hand (a few protobuf bytes), as the kubelet's probe
does, so no generated stubs are needed."""
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc

import deploy_testlib as lib
import grafana_dashboard_test as grafana

SERVING, NOT_SERVING = 1, 2
SHUTDOWN_DELAY_S = 5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def field(number, payload):
    """A length-delimited protobuf field (strings, bytes)."""
    data = payload.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def health_status(port, service=""):
    """grpc.health.v1.Health/Check as the kubelet's gRPC probe sends it."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        response = check(field(1, service) if service else b"", timeout=5)
    # HealthCheckResponse: field 1 (varint) status; absent means UNKNOWN (0).
    return response[1] if response[:1] == b"\x08" else 0


def rank(port, user, candidates):
    """embsum.v1.Ranker/Rank; returns the gRPC status code."""
    request = field(1, user) + b"".join(field(2, c) for c in candidates)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/embsum.v1.Ranker/Rank")
        try:
            call(request, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


def deployment_args():
    """The server container's args of deploy/k8s/cpu/deployment.yaml."""
    (deployment,) = [d for d in lib.load_yaml_documents(
        lib.ROOT / "deploy" / "k8s" / "cpu" / "deployment.yaml") if d["kind"] == "Deployment"]
    (server,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]
                 if c["name"] == "server"]
    return server["args"]


class LiveServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not lib.OPTIONS.server:
            raise unittest.SkipTest("no --server binary (embsum-server not built)")
        cls.ports = {name: free_port() for name in ("listen", "admin_listen", "metrics_listen")}
        args = []
        for arg in deployment_args():
            name = arg[2:].split("=", 1)[0]
            if name == "data_dir":
                args.append("--demo")  # a synthetic model instead of the ingested one
            elif name == "shutdown_delay":
                args.append(f"--shutdown_delay={SHUTDOWN_DELAY_S}s")
            else:
                args.append(arg.replace("$(CPU_LIMIT)", "2"))
        args += [f"--{name}=127.0.0.1:{port}" for name, port in cls.ports.items()]
        cls.args = args
        cls.log = tempfile.TemporaryFile()
        cls.server = subprocess.Popen([lib.OPTIONS.server, *args], stdout=cls.log,
                                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            if cls.server.poll() is not None:
                raise AssertionError(f"embsum-server {' '.join(args)} exited "
                                     f"{cls.server.returncode}:\n{cls.output()}")
            try:
                if health_status(cls.ports["listen"]) == SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                cls.server.kill()
                raise AssertionError(f"embsum-server not SERVING after 90 s:\n{cls.output()}")
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        if cls.server.poll() is None:
            cls.server.kill()
            cls.server.wait()
        cls.log.close()

    @classmethod
    def output(cls):
        cls.log.seek(0)
        return cls.log.read().decode(errors="replace")[-4000:]

    def scrape(self):
        url = f"http://127.0.0.1:{self.ports['metrics_listen']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def test_1_probe_health_check_is_serving_on_the_listen_port(self):
        self.assertEqual(health_status(self.ports["listen"]), SERVING)

    def test_2_metrics_have_what_rules_and_dashboard_read(self):
        self.assertEqual(rank(self.ports["listen"], "U1", ["N1", "N2", "N3"]), grpc.StatusCode.OK)
        self.assertEqual(rank(self.ports["listen"], "no-such-user", ["N1"]),
                         grpc.StatusCode.NOT_FOUND)
        text = self.scrape()
        check = subprocess.run([lib.OPTIONS.promtool, "check", "metrics"], input=text,
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, f"promtool check metrics:\n{check.stdout}{check.stderr}")

        samples = re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", text, re.M)
        exposed = {name for name, _ in samples}
        used = set()
        for path in lib.prometheus_rule_files():
            for group in lib.load_yaml_documents(path)[0]["groups"]:
                for rule in group["rules"]:
                    used |= lib.metric_names(rule["expr"])
        for _, expr in grafana.queries(grafana.load_dashboard()):
            used |= lib.metric_names(expr)
        used &= lib.CONTRACT_METRICS
        self.assertGreater(len(used), 10)
        self.assertEqual(used - exposed, set(), "series the rules or dashboard read are missing")

        labels = "\n".join(l for _, l in samples)
        codes = set(re.findall(r'grpc_code="([^"]*)"', labels))
        self.assertIn("NOT_FOUND", codes)
        self.assertLessEqual(codes, lib.GRPC_CODES)
        self.assertIn('le="0.025"', text, "the latency SLO is not a bucket bound")
        self.assertRegex(text, r'embsum_model_info\{model_version="[^"]+"\} 1')
        self.assertRegex(text, r'embsum_scoring_seconds_count\{backend="cpu"\} [1-9]')
        self.assertRegex(text, r'grpc_server_handled_total\{[^}]*grpc_method="Rank"[^}]*'
                               r'grpc_code="NOT_FOUND"\} 1')

    def test_3_sigterm_turns_health_not_serving_then_drains_and_exits_0(self):
        started = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        status = SERVING
        while status == SERVING and time.monotonic() - started < SHUTDOWN_DELAY_S:
            status = health_status(self.ports["listen"])
            time.sleep(0.05)
        self.assertEqual(status, NOT_SERVING, "health still SERVING after SIGTERM")
        # Still serving calls: clients that have not noticed yet lose nothing.
        # (Checked only while surely inside the delay, so a slow machine
        # cannot turn this into a timing test.)
        if time.monotonic() - started < SHUTDOWN_DELAY_S - 2:
            self.assertEqual(rank(self.ports["listen"], "U1", ["N1"]), grpc.StatusCode.OK)
        else:
            print("live_server_test: machine too slow to call within --shutdown_delay; "
                  "skipped the call-during-drain check")
        self.assertEqual(self.server.wait(timeout=SHUTDOWN_DELAY_S + 40), 0, self.output())


if __name__ == "__main__":
    lib.main()
