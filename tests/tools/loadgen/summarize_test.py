"""benchmarks/service/summarize.py on a hand-made result folder: the capacity
is the best error-free closed-loop run; the server's figures are per phase
(the histogram's sum and count differences between the scrapes around each
loadgen run, so another phase's traffic never leaks in); every target is
computed from figures of the same run and lands in summary.json.

usage: summarize_test.py SUMMARIZE_PY
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tooltest as t  # noqa: E402


def report(qps, p50, errors=0, concurrency=0, rate=0, requests=1000, p99=None):
    return {"qps": qps, "errors": errors, "requests": requests, "codes": {"OK": requests - errors},
            "concurrency": concurrency, "rate": rate, "candidates": "500",
            "mean_request_bytes": 5000, "mean_response_bytes": 9000,
            "latency_seconds": {"p50": p50, "p90": 2 * p50,
                                "p99": 3 * p50 if p99 is None else p99,
                                "p999": 4 * p50, "max": 5 * p50}}


def metrics(count, scoring_sum, handling_sum, phase_sums=(0, 0, 0, 0, 0), queue_sum=0.0):
    """A /metrics text with cumulative sums after `count` Rank calls."""
    lines = ["# TYPE embsum_scoring_seconds histogram",
             'embsum_scoring_seconds_sum{backend="cpu"} %g' % scoring_sum,
             'embsum_scoring_seconds_count{backend="cpu"} %d' % count,
             'grpc_server_handling_seconds_sum{grpc_service="embsum.v1.Ranker",grpc_method="Rank"} %g' % handling_sum,
             'grpc_server_handling_seconds_count{grpc_service="embsum.v1.Ranker",grpc_method="Rank"} %d' % count,
             'grpc_server_handling_seconds_sum{grpc_service="embsum.v1.Ranker",grpc_method="GetModelInfo"} 99',
             'grpc_server_handling_seconds_count{grpc_service="embsum.v1.Ranker",grpc_method="GetModelInfo"} 1',
             'embsum_queue_wait_seconds_sum{pool="rank"} %g' % queue_sum,
             'embsum_queue_wait_seconds_count{pool="rank"} %d' % count,
             'embsum_queue_wait_seconds_sum{pool="admin"} 50',
             'embsum_queue_wait_seconds_count{pool="admin"} 1']
    for name, value in zip(("user", "lookup", "score", "top_k", "response"), phase_sums):
        lines.append('embsum_rank_phase_seconds_sum{phase="%s"} %g' % (name, value))
        lines.append('embsum_rank_phase_seconds_count{phase="%s"} %d' % (name, count))
    return "\n".join(lines) + "\n"


def write(out, name, content):
    with open(os.path.join(out, name), "w") as f:
        if isinstance(content, str):
            f.write(content)
        else:
            json.dump(content, f)


def run(summarize, *args):
    return subprocess.run(["/usr/bin/python3", summarize] + list(args),
                          capture_output=True, text=True, check=True).stdout


def close(a, b):
    return a is not None and abs(a - b) < 1e-9


def main():
    summarize = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        files = {
            "host.json": {"cores": 2, "cpu": "Test CPU"},
            "echo_c1.json": report(5000, 0.0001, concurrency=1),
            "echo_capacity.json": report(9000, 0.0005, concurrency=16),
            "rank_c1.json": report(1000, 0.0010, concurrency=1),
            "rank_c1_one.json": report(4000, 0.00015, concurrency=1),
            "rank_closed_c4.json": report(3000, 0.0012, concurrency=4),
            # Faster but failing: not the capacity.
            "rank_closed_c16.json": report(3500, 0.004, errors=100, concurrency=16),
            "rank_open_50.json": report(1500, 0.0011, rate=1500),
            # p99 6 ms > 5 x 1 ms: the open-loop target is missed.
            "rank_open_80.json": report(2400, 0.0020, rate=2400, p99=0.006),
            "rank_open_80_constant.json": report(2400, 0.0013, rate=2400, p99=0.0025),
            "bench_scoring.json": {"ours_seconds_p50": 0.0009, "ours_seconds_min": 0.00085,
                                   "sgemm_bound_seconds_p50": 0.0007, "dtype": "fp32",
                                   "user_codes": 32, "item_codes": 8, "dim": 512},
            "bench_scoring_1t.json": {"ours_seconds_p50": 0.0005, "user_codes": 32,
                                      "item_codes": 8, "dim": 512},
        }
        # The cold echo: p50 0.45 ms with a mean sweep of 0.3 ms: floor 0.15 ms.
        files["echo_cold_c1.json"] = report(2000, 0.00045, concurrency=1)
        files["echo_cold.log"] = ("embsum-echo-server: listening on port 1\n"
                                  "embsum-echo-server: swept 4194304 bytes before each of 900 "
                                  "answers, mean_sweep_seconds=0.0003\n")
        for name, content in files.items():
            write(out, name, content)
        # rank_c1: 100 calls, scoring 0.8 ms, handling 1.0 ms, queue 0.02 ms.
        write(out, "metrics_rank_c1_before.txt",
              metrics(10, 0.01, 0.02, (0.001, 0.001, 0.01, 0.001, 0.001), 0.001))
        write(out, "metrics_rank_c1_after.txt",
              metrics(110, 0.09, 0.12, (0.003, 0.002, 0.09, 0.0015, 0.002), 0.003))
        # rank_c1_one: 100 calls; the scrape before it sees a few more calls
        # than rank_c1's after (the warm-up between), which must not count.
        write(out, "metrics_rank_c1_one_before.txt", metrics(120, 0.5, 0.5))
        write(out, "metrics_rank_c1_one_after.txt", metrics(220, 0.501, 0.52))
        # The closed-loop phase at the capacity: 300 calls, scoring 2 ms.
        write(out, "metrics_rank_closed_c4_before.txt", metrics(300, 1.0, 1.0))
        write(out, "metrics_rank_closed_c4_after.txt", metrics(600, 1.6, 2.5))

        cap = run(summarize, "capacity", out).strip()
        t.check(cap == "3000.0", "capacity %r, expected the error-free 3000.0" % cap)

        table = run(summarize, "table", out)
        print(table)
        for expected in ("| S1: m=32 n=8 d=512, 500 candidates | measured |",
                         "0.100 ms / 0.300 ms",           # echo floor p50 / p99
                         "all threads p50 / one thread p50 | 0.900 ms / 0.500 ms |",
                         # handling; scoring; handling - scoring; queue wait
                         "| 1.000 ms; 0.800 ms; 0.200 ms; 0.020 ms |",
                         "| 0.020 ms; 0.010 ms; 0.800 ms; 0.005 ms; 0.010 ms |",
                         "scoring mean | 0.150 ms; 0.200 ms; 0.010 ms |",
                         "best concurrency: 4) | 3000 /s (p50 1.200 ms, p99 3.600 ms; "
                         "scoring mean 2.000 ms) |",
                         "50% of capacity (1500 /s offered, Poisson): p50 / p99 / p99.9 | "
                         "1.100 ms / 3.300 ms / 4.400 ms",
                         # 1.0 ms vs 0.9 + 2 x 0.1
                         "kernel all-threads p50 + 2 x echo p50 | 1.000 ms vs 1.100 ms: met (ratio 0.91) |",
                         # 0.15 ms vs 0.2 ms
                         "2 x echo p50 | 0.150 ms vs 0.200 ms: met (ratio 0.75) |",
                         # 3000 /s vs 0.8 x 2 / 0.5 ms = 3200 /s
                         "80% of 2 cores / kernel one-thread p50 | 3000 /s vs 3200 /s: MISSED (ratio 0.94) |",
                         "no errors | 6.000 ms vs 5.000 ms: MISSED (ratio 1.20) |",
                         # 0.8 ms vs 1.1 x 0.9 ms
                         "1.1 x kernel all-threads p50 | 0.800 ms vs 0.990 ms: met (ratio 0.81) |"):
            t.check(expected in table, "table lacks %r" % expected)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        targets = summary["targets"]
        t.check(targets["rank_c1"]["met"] is True and close(targets["rank_c1"]["bound"], 0.0011),
                "rank_c1 %r" % targets["rank_c1"])
        t.check(targets["rank_one_c1"]["met"] is True, "rank_one_c1 %r" % targets["rank_one_c1"])
        t.check(targets["capacity"]["met"] is False and close(targets["capacity"]["bound"], 3200),
                "capacity %r" % targets["capacity"])
        t.check(targets["open_loop_80"]["met"] is False, "open loop %r" % targets["open_loop_80"])
        t.check(targets["scoring_in_server"]["met"] is True, "scoring %r" % targets["scoring_in_server"])
        # 1.0 ms vs 0.9 + 2 x 0.15 ms
        t.check("cold caches (4194304 bytes swept before each answer): p50 - mean sweep | 0.150 ms |"
                in table, "table lacks the cold echo floor")
        t.check("2 x the cold echo floor | 1.000 ms vs 1.200 ms: ratio 0.83 |" in table,
                "table lacks the c=1 p50 against the cold floor")
        t.check(close(summary["echo_cold_floor_p50_seconds"], 0.00015)
                and summary["echo_cold_sweep_bytes"] == 4194304
                and close(summary["rank_c1_vs_cold_floor"]["bound"], 0.0012),
                "cold floor %r" % summary.get("rank_c1_vs_cold_floor"))
        # The queueing floor of the 80% phase: M/D/2 at 2400/s with 2 / 3000 s
        # per request (utilisation 0.8) has a p99 of about 6.3 services.
        floor = summary["open_loop_80_queueing_floor_p99_seconds"]
        service = 2 / 3000
        t.check(floor is not None and 5.5 * service < floor < 7.0 * service,
                "queueing floor %r for a %g s service" % (floor, service))
        t.check("M/D/2 p99, 0.667 ms per request (cores / capacity) | %.3f ms |" % (floor * 1e3)
                in table, "table lacks the queueing floor")
        t.check("constant spacing): p50 / p99 / p99.9 | 1.300 ms / 2.500 ms / 5.200 ms" in table,
                "table lacks the constant-arrival phase")
        t.check(summary["open_loop_80_constant"]["latency_seconds"]["p99"] == 0.0025,
                "constant phase %r" % summary["open_loop_80_constant"])
        sys.path.insert(0, os.path.dirname(os.path.abspath(summarize)))
        import summarize as s  # noqa: E402
        # Light load: nobody waits, the p99 is the service time.
        t.check(abs(s.md_c_p99(2, 1.0, 0.01) - 1.0) < 1e-9, "M/D/2 at light load")
        # Busier is slower; one server at 0.5 is slower than two at 0.5 each.
        t.check(s.md_c_p99(2, 1.0, 1.6) > s.md_c_p99(2, 1.0, 1.0) > s.md_c_p99(2, 1.0, 0.2),
                "M/D/2 p99 grows with the load")
        t.check(s.md_c_p99(1, 1.0, 0.5) > s.md_c_p99(2, 1.0, 1.0), "pooling two servers helps")
        c1 = summary["server_phases"]["rank_c1"]
        t.check(close(c1["scoring_mean_seconds"], 0.0008), "c1 scoring %r" % c1)
        t.check(close(c1["handling_minus_scoring_seconds"], 0.0002), "c1 outside %r" % c1)
        t.check(close(c1["rank_phase_mean_seconds"]["user"], 0.00002), "c1 user %r" % c1)
        one = summary["server_phases"]["rank_c1_one"]
        t.check(close(one["handling_mean_seconds"], 0.0002), "one handling %r" % one)
        t.check(summary["server_phases"]["rank_closed_c16"]["scoring_mean_seconds"] is None,
                "a phase without scrapes has no server figures")
        t.check(summary["capacity_concurrency"] == 4, "capacity concurrency %r" % summary)
        t.check(summary["cores"] == 2, "cores %r" % summary)

        # Errors in the 80% open loop fail its target even with a good p99.
        write(out, "rank_open_80.json", report(2400, 0.0010, rate=2400, errors=3, p99=0.003))
        run(summarize, "table", out)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        t.check(summary["targets"]["open_loop_80"]["met"] is False,
                "errors must fail the open-loop target: %r" % summary["targets"]["open_loop_80"])

        bad = subprocess.run(["/usr/bin/python3", summarize, "bogus", out], capture_output=True, text=True)
        t.check(bad.returncode != 0, "a bad command must fail")
    print("PASS")


if __name__ == "__main__":
    main()
