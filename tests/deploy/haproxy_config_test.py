"""Checks deploy/haproxy: haproxy.cfg is what render_haproxy_cfg.py writes
for the example deployment (so the two never drift), HAProxy 2.6 accepts it
(`haproxy -c`, skipped where haproxy is not installed), it routes by zlib's
crc32 of x-user-id (no avalanche), speaks h2 to every server, retries only
connection-level failures, and its health check is a well-formed HTTP/2
grpc.health.v1.Health/Check call. Routing and failover with real processes:
tests/cluster."""
import shutil
import subprocess
import sys
import unittest

import deploy_testlib as lib

HAPROXY_DIR = lib.ROOT / "deploy" / "haproxy"
sys.path.insert(0, str(HAPROXY_DIR))
import render_haproxy_cfg as render  # noqa: E402

EXAMPLE = [
    "--shards=2",
    "--server=0=embsum-shard0-a:50051", "--server=0=embsum-shard0-b:50051",
    "--server=1=embsum-shard1-a:50051", "--server=1=embsum-shard1-b:50051",
]


def sections(text):
    """{"backend embsum_shard0": [lines], ...} without comments."""
    out, current = {}, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line.strip()
            out[current] = []
        else:
            out[current].append(line.strip())
    return out


class HaproxyConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = (HAPROXY_DIR / "haproxy.cfg").read_text()
        cls.sections = sections(cls.text)

    def test_checked_in_config_is_the_rendered_example(self):
        r = subprocess.run([sys.executable,
                            str(HAPROXY_DIR / "render_haproxy_cfg.py"),
                            *EXAMPLE], capture_output=True, text=True,
                           check=True)
        self.assertEqual(r.stdout, self.text,
                         "re-run deploy/haproxy/render_haproxy_cfg.py "
                         + " ".join(EXAMPLE) + " > deploy/haproxy/haproxy.cfg")

    def test_haproxy_accepts_it(self):
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            self.skipTest("haproxy not installed (tools/setup.sh installs it)")
        r = subprocess.run([haproxy, "-c", "-f",
                            str(HAPROXY_DIR / "haproxy.cfg")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_routes_by_crc32_of_the_whole_header_mod_shards(self):
        front = self.sections["frontend embsum_ranker"]
        self.assertIn("bind :50051 proto h2", front)
        self.assertIn("http-request set-var(txn.shard) "
                      "req.fhdr(x-user-id),crc32,mod(2) "
                      "if { req.fhdr(x-user-id) -m found }", front)
        for shard in range(2):
            self.assertIn(f"use_backend embsum_shard{shard} if "
                          f"{{ var(txn.shard) -m int {shard} }}", front)
        self.assertNotIn("crc32(1)", self.text, "avalanche would not be zlib's")

    def test_each_shard_backend_holds_its_replicas_over_h2_with_checks(self):
        for shard in range(2):
            lines = self.sections[f"backend embsum_shard{shard}"]
            self.assertIn("balance roundrobin", lines)
            servers = [l for l in lines if l.startswith("server ")]
            self.assertEqual(len(servers), 2)
            for line in servers:
                self.assertIn(f"embsum-shard{shard}-", line)
                self.assertIn(" proto h2 ", line)
                self.assertIn(" check ", line)
            self.assertIn("tcp-check expect binary 00000000020801", lines)
        anyb = [l for l in self.sections["backend embsum_any"]
                if l.startswith("server ")]
        self.assertEqual(len(anyb), 4)

    def test_retries_connection_failures_on_another_replica(self):
        d = self.sections["defaults"]
        self.assertIn("retry-on conn-failure empty-response response-timeout",
                      d)
        self.assertIn("option redispatch 1", d)
        self.assertIn("retries 3", d)

    def test_health_check_is_an_http2_grpc_health_call(self):
        raw = bytes.fromhex(render.health_check_hex())
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        self.assertTrue(raw.startswith(preface))
        frames, rest = [], raw[len(preface):]
        while rest:
            length = int.from_bytes(rest[:3], "big")
            frames.append((rest[3], rest[4],
                           int.from_bytes(rest[5:9], "big"),
                           rest[9:9 + length]))
            rest = rest[9 + length:]
        self.assertEqual([(t, f, s) for t, f, s, _ in frames],
                         [(4, 0, 0), (1, 4, 1), (0, 1, 1)])
        headers = frames[1][3]
        self.assertEqual(headers[:2], b"\x83\x86")  # :method POST, :scheme http
        self.assertIn(b"/grpc.health.v1.Health/Check", headers)
        self.assertIn(b"\x0ccontent-type\x10application/grpc", headers)
        self.assertIn(b"\x02te\x08trailers", headers)
        self.assertEqual(frames[2][3], b"\x00" * 5)  # empty HealthCheckRequest

    def test_renderer_refuses_a_shard_without_servers(self):
        r = subprocess.run([sys.executable,
                            str(HAPROXY_DIR / "render_haproxy_cfg.py"),
                            "--shards=2", "--server=0=a:1"],
                           capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("shard 1 has no server", r.stderr)


if __name__ == "__main__":
    lib.main()
