"""embsum-loadgen against a live embsum-server: short closed-loop, open-loop
and behaviors-replay runs with zero errors, and report files that parse.

usage: loadgen_live_test.py LOADGEN SERVER DATAGEN INGEST
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tooltest as t  # noqa: E402


def main():
    loadgen, server, datagen, ingest = sys.argv[1:5]
    tools = {"server": server, "datagen": datagen, "ingest": ingest}
    with t.workdir() as work, t.live_server(tools, work) as (address, model):
        common = [loadgen, "--target=" + address, "--connect_timeout=60", "--warmup=0.5",
                  "--duration=2", "--progress=false"]
        closed = os.path.join(work, "closed")
        t.run(common + ["--model_dir=" + model, "--candidates=100", "--concurrency=4",
                        "--json=%s.json" % closed, "--csv=%s.csv" % closed,
                        "--svg=%s.svg" % closed])
        report = t.check_load_report(closed + ".json")
        t.check(report["mode"] == "closed_loop" and report["mean_candidates"] == 100,
                "closed-loop report: %r" % report)
        t.check(report["mean_response_bytes"] > 0, "no response bytes")
        server_info = report.get("server", {})
        t.check(server_info.get("dim") == 64 and server_info.get("items") == 2000 and
                server_info.get("backend"), "report does not name the served model: %r" % server_info)
        t.check_csv(closed + ".csv")
        t.check_svg(closed + ".svg")

        opened = os.path.join(work, "open")
        p = t.run(common + ["--model_dir=" + model, "--candidates=uniform:50:200",
                            "--rate=100", "--json=%s.json" % opened, "--svg=%s.svg" % opened])
        report = t.check_load_report(opened + ".json")
        t.check(report["mode"] == "open_loop", "open-loop report: %r" % report)
        t.check(50 <= report["mean_candidates"] <= 200, "mean candidates %r" % report["mean_candidates"])
        t.check("open loop" in p.stdout, "no text report on stdout")
        t.check_svg(opened + ".svg")

        replay = os.path.join(work, "replay.json")
        t.run(common + ["--behaviors=" + os.path.join(model, "behaviors.tsv"),
                        "--concurrency=2", "--json=" + replay])
        t.check_load_report(replay)

        # Unknown users are counted per status code, not dropped.
        bad = os.path.join(work, "bad_model")
        os.makedirs(os.path.join(bad, "users"))
        os.makedirs(os.path.join(bad, "items"))
        with open(os.path.join(bad, "users", "ids.txt"), "w") as f:
            f.write("no-such-user\n")
        with open(os.path.join(model, "items", "ids.txt")) as src, \
                open(os.path.join(bad, "items", "ids.txt"), "w") as dst:
            dst.write(src.read())
        notfound = os.path.join(work, "notfound.json")
        t.run(common + ["--model_dir=" + bad, "--candidates=10", "--concurrency=2",
                        "--json=" + notfound])
        report = t.check_load_report(notfound, expect_zero_errors=False)
        t.check(report["errors"] == report["requests"] and
                report["codes"] == {"NOT_FOUND": report["requests"]},
                "unknown users: codes %r" % report["codes"])
    print("PASS")


if __name__ == "__main__":
    main()
