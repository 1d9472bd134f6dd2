"""benchmarks/service/summarize.py on a hand-made result folder: the capacity
is the best error-free closed-loop run, and the table shows the floor, the
open-loop percentiles, the scoring time and the overhead check.

usage: summarize_test.py SUMMARIZE_PY
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tooltest as t  # noqa: E402


def report(qps, p50, errors=0, concurrency=0, rate=0, requests=1000):
    return {"qps": qps, "errors": errors, "requests": requests, "codes": {"OK": requests - errors},
            "concurrency": concurrency, "rate": rate, "candidates": "500",
            "mean_request_bytes": 5000, "mean_response_bytes": 9000,
            "latency_seconds": {"p50": p50, "p90": 2 * p50, "p99": 3 * p50, "p999": 4 * p50,
                                "max": 5 * p50}}


def metrics(count, scoring_sum, handling_sum):
    return ("# TYPE embsum_scoring_seconds histogram\n"
            'embsum_scoring_seconds_sum{backend="cpu"} %g\n'
            'embsum_scoring_seconds_count{backend="cpu"} %d\n'
            'grpc_server_handling_seconds_sum{grpc_service="embsum.v1.Ranker",grpc_method="Rank"} %g\n'
            'grpc_server_handling_seconds_count{grpc_service="embsum.v1.Ranker",grpc_method="Rank"} %d\n'
            'grpc_server_handling_seconds_sum{grpc_service="embsum.v1.Ranker",grpc_method="GetModelInfo"} 99\n'
            'grpc_server_handling_seconds_count{grpc_service="embsum.v1.Ranker",grpc_method="GetModelInfo"} 1\n'
            % (scoring_sum, count, handling_sum, count))


def main():
    summarize = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        files = {
            "echo_c1.json": report(5000, 0.0001, concurrency=1),
            "echo_capacity.json": report(9000, 0.0005, concurrency=16),
            "rank_c1.json": report(1000, 0.0010, concurrency=1),
            "rank_c1_one.json": report(4000, 0.0003, concurrency=1),
            "rank_closed_c4.json": report(3000, 0.0012, concurrency=4),
            # Faster but failing: not the capacity.
            "rank_closed_c16.json": report(3500, 0.004, errors=100, concurrency=16),
            "rank_open_50.json": report(1500, 0.0011, rate=1500),
            "rank_open_80.json": report(2400, 0.0020, rate=2400),
            "bench_scoring.json": {"ours_seconds_p50": 0.0009, "ours_seconds_min": 0.00085,
                                   "sgemm_bound_seconds_p50": 0.0007,
                                   "user_codes": 32, "item_codes": 8, "dim": 512},
        }
        for name, content in files.items():
            with open(os.path.join(out, name), "w") as f:
                json.dump(content, f)
        with open(os.path.join(out, "metrics_before_c1.txt"), "w") as f:
            f.write(metrics(10, 0.01, 0.02))
        with open(os.path.join(out, "metrics_after_c1.txt"), "w") as f:
            f.write(metrics(110, 0.09, 0.12))
        with open(os.path.join(out, "metrics_after_c1_one.txt"), "w") as f:
            f.write(metrics(210, 0.091, 0.14))  # 100 calls: 0.01 ms, 0.2 ms

        cap = subprocess.run(["/usr/bin/python3", summarize, "capacity", out],
                             capture_output=True, text=True, check=True).stdout.strip()
        t.check(cap == "3000.0", "capacity %r, expected the error-free 3000.0" % cap)

        table = subprocess.run(["/usr/bin/python3", summarize, "table", out],
                               capture_output=True, text=True, check=True).stdout
        print(table)
        for expected in ("| S1: m=32 n=8 d=512, 500 candidates | measured |",
                         "0.100 ms / 0.300 ms",           # echo floor p50 / p99
                         "best concurrency: 4) | 3000 /s",
                         "50% of capacity (1500 /s offered, Poisson): p50 / p99 / p99.9 | "
                         "1.100 ms / 3.300 ms / 4.400 ms",
                         "| 0.900 ms (min 0.850 ms; sgemm bound p50 0.700 ms) |",
                         "(embsum_scoring_seconds) | 0.800 ms |",      # 0.08 s / 100 calls
                         "(grpc_server_handling_seconds) | 1.000 ms |",  # Rank only
                         "scoring mean | 0.300 ms; 0.200 ms; 0.010 ms |",
                         # Overhead: Rank p50 1.0 ms - the server's scoring mean 0.8 ms.
                         "(server mean; target <= 2 x floor = 0.200 ms) | 0.200 ms |"):
            t.check(expected in table, "table lacks %r" % expected)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        t.check(abs(summary["server_overhead_seconds"] - 0.0002) < 1e-12, "overhead %r" % summary)
        t.check(summary["overhead_within_2x_floor"] is True, "overhead check %r" % summary)
        t.check(summary["capacity_concurrency"] == 4, "capacity concurrency %r" % summary)
        t.check(abs(summary["rank_one_candidate_handling_mean_seconds"] - 0.0002) < 1e-12,
                "one-candidate handling %r" % summary)

        bad = subprocess.run(["/usr/bin/python3", summarize, "bogus", out], capture_output=True, text=True)
        t.check(bad.returncode != 0, "a bad command must fail")
    print("PASS")


if __name__ == "__main__":
    main()
