"""embsum-echo-server and embsum-loadgen --target_kind=echo: a closed-loop
run and a two-step sweep with zero errors, report files that parse, flag
errors, and a clean SIGTERM shutdown.

usage: echo_floor_test.py ECHO_SERVER LOADGEN
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "loadgen"))
import tooltest as t  # noqa: E402


def main():
    echo_server, loadgen = sys.argv[1:3]
    with t.workdir() as work:
        model = os.path.join(work, "model")
        os.makedirs(os.path.join(model, "users"))
        os.makedirs(os.path.join(model, "items"))
        with open(os.path.join(model, "users", "ids.txt"), "w") as f:
            f.write("".join("U%d\n" % i for i in range(50)))
        with open(os.path.join(model, "items", "ids.txt"), "w") as f:
            f.write("".join("N%d\n" % i for i in range(3000)))

        log = os.path.join(work, "echo.log")
        with t.process([echo_server, "--listen=127.0.0.1:0"], log) as server:
            port = t.wait_for_line(log, r"listening on port (\d+)", server).group(1)
            address = "127.0.0.1:" + port
            common = [loadgen, "--target=" + address, "--target_kind=echo",
                      "--model_dir=" + model, "--candidates=500", "--warmup=0.3"]
            out = os.path.join(work, "echo")
            p = t.run(common + ["--concurrency=2", "--duration=1", "--json=%s.json" % out,
                                "--csv=%s.csv" % out, "--svg=%s.svg" % out])
            report = t.check_load_report(out + ".json")
            t.check(report["target_kind"] == "echo", "target_kind %r" % report["target_kind"])
            # The floor answers with a Rank-sized response.
            t.check(report["mean_response_bytes"] > report["mean_request_bytes"],
                    "echo response smaller than the request: %r" % report)
            t.check_csv(out + ".csv")
            t.check_svg(out + ".svg")
            t.check("qps" in p.stderr, "no progress line on stderr")

            sweep = os.path.join(work, "sweep.json")
            p = t.run(common + ["--sweep", "--rate=50", "--slo=2", "--sweep_factor=2",
                                "--sweep_max_steps=2", "--duration=0.5", "--progress=false",
                                "--json=" + sweep])
            report = t.check_load_report(sweep)
            steps = report["sweep"]["steps"]
            t.check([s["rate"] for s in steps] == [50, 100], "sweep rates %r" % steps)
            t.check(all(s["held"] for s in steps), "an echo step broke a 2 s SLO")
            t.check(report["sweep"]["max_rate_within_slo"] == 100, "sweep answer %r" % report["sweep"])
            t.check("highest rate within the SLO: 100.0/s" in p.stdout, "no sweep summary")

            # Flag errors exit 2 with a message; an unreachable target exits 1.
            p = t.run([loadgen, "--target=" + address, "--model_dir=" + model], expect_rc=2)
            t.check("--concurrency" in p.stderr, "no message for missing --concurrency")
            p = t.run([loadgen, "--target=127.0.0.1:%d" % t.free_port(), "--model_dir=" + model,
                       "--concurrency=1", "--connect_timeout=0.5"], expect_rc=1)
            t.check("cannot connect" in p.stderr, "no message for an unreachable target")

            server.send_signal(signal.SIGTERM)
            t.check(server.wait(timeout=30) == 0, "echo server exit status %r" % server.returncode)

        p = t.run([echo_server, "--listen=not-an-address"], expect_rc=1)
        t.check("cannot listen" in p.stderr, "no message for a bad --listen")
    print("PASS")


if __name__ == "__main__":
    main()
