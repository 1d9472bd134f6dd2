"""TLS and mTLS between embsum-loadgen and embsum-echo-server, with a
self-signed certificate made by the openssl command-line tool.

usage: echo_tls_test.py ECHO_SERVER LOADGEN
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "loadgen"))
import tooltest as t  # noqa: E402


def main():
    echo_server, loadgen = sys.argv[1:3]
    with t.workdir() as work:
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
        model = os.path.join(work, "model")
        for sub, prefix in (("users", "U"), ("items", "N")):
            os.makedirs(os.path.join(model, sub))
            with open(os.path.join(model, sub, "ids.txt"), "w") as f:
                f.write("".join("%s%d\n" % (prefix, i) for i in range(100)))

        def loadgen_args(address, *extra):
            return [loadgen, "--target=" + address, "--target_kind=echo", "--model_dir=" + model,
                    "--candidates=20", "--concurrency=1", "--duration=0.3", "--warmup=0",
                    "--progress=false", "--connect_timeout=2"] + list(extra)

        log = os.path.join(work, "tls.log")
        with t.process([echo_server, "--listen=127.0.0.1:0", "--tls_cert=" + cert,
                        "--tls_key=" + key], log) as server:
            address = "127.0.0.1:" + t.wait_for_line(log, r"listening on port (\d+)", server).group(1)
            out = os.path.join(work, "tls.json")
            t.run(loadgen_args(address, "--tls_ca_cert=" + cert, "--tls_server_name=localhost",
                               "--json=" + out))
            t.check_load_report(out)
            p = t.run(loadgen_args(address), expect_rc=1)  # plaintext to a TLS port
            t.check("cannot connect" in p.stderr, "plaintext client connected to TLS")

        log = os.path.join(work, "mtls.log")
        with t.process([echo_server, "--listen=127.0.0.1:0", "--tls_cert=" + cert,
                        "--tls_key=" + key, "--tls_client_ca=" + cert], log) as server:
            address = "127.0.0.1:" + t.wait_for_line(log, r"listening on port (\d+)", server).group(1)
            out = os.path.join(work, "mtls.json")
            t.run(loadgen_args(address, "--tls_ca_cert=" + cert, "--tls_server_name=localhost",
                               "--tls_cert=" + cert, "--tls_key=" + key, "--json=" + out))
            t.check_load_report(out)
            p = t.run(loadgen_args(address, "--tls_ca_cert=" + cert, "--tls_server_name=localhost"),
                      expect_rc=1)
            t.check("cannot connect" in p.stderr, "a client without a certificate got through mTLS")

        p = t.run([echo_server, "--listen=127.0.0.1:0", "--tls_cert=" + cert], expect_rc=1)
        t.check("--tls_key" in p.stderr, "no message for a certificate without a key")
    print("PASS")


if __name__ == "__main__":
    main()
