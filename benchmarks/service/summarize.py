"""Summarizes a benchmarks/service/run_s1.sh result folder.

  summarize.py capacity DIR   prints the closed-loop capacity (Rank/s): the
                              highest OK qps of rank_c1.json and
                              rank_closed_c*.json with < 0.1% errors
  summarize.py table DIR      prints the Performance table (Markdown) and
                              writes DIR/summary.json
"""

import glob
import json
import os
import re
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def closed_runs(out):
    runs = []
    for path in [os.path.join(out, "rank_c1.json")] + sorted(
            glob.glob(os.path.join(out, "rank_closed_c*.json"))):
        if os.path.exists(path):
            runs.append(load(path))
    return runs


def best_closed(out):
    ok = [r for r in closed_runs(out)
          if r["requests"] > 0 and r["errors"] <= 0.001 * r["requests"]]
    if not ok:
        sys.exit("summarize: no closed-loop run without errors in " + out)
    return max(ok, key=lambda r: r["qps"])


def metric_sum(path, name, label_filter=""):
    """Sum of a Prometheus sample over the label sets containing label_filter."""
    total = 0.0
    found = False
    if not os.path.exists(path):
        return None
    rx = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)")
    with open(path) as f:
        for line in f:
            m = rx.match(line)
            if m and label_filter in (m.group(1) or ""):
                total += float(m.group(2))
                found = True
    return total if found else None


def delta_mean(out, name, label_filter="", before="metrics_before_c1.txt",
               after="metrics_after_c1.txt"):
    """Mean of a histogram between two /metrics scrapes (default: over the
    concurrency-1 run)."""
    before = os.path.join(out, before)
    after = os.path.join(out, after)
    s0, s1 = metric_sum(before, name + "_sum", label_filter), metric_sum(after, name + "_sum", label_filter)
    c0, c1 = metric_sum(before, name + "_count", label_filter), metric_sum(after, name + "_count", label_filter)
    if None in (s0, s1, c0, c1) or c1 <= c0:
        return None
    return (s1 - s0) / (c1 - c0)


def ms(seconds):
    return "n/a" if seconds is None else "%.3f ms" % (seconds * 1e3)


def table(out):
    echo = load(os.path.join(out, "echo_c1.json"))
    echo_cap = load(os.path.join(out, "echo_capacity.json"))
    rank1 = load(os.path.join(out, "rank_c1.json"))
    best = best_closed(out)
    opens = {p: load(os.path.join(out, "rank_open_%d.json" % p)) for p in (50, 80)}
    bench_path = os.path.join(out, "bench_scoring.json")
    bench = load(bench_path) if os.path.exists(bench_path) else None
    scoring_bench = bench["ours_seconds_p50"] if bench else None
    scoring_server = delta_mean(out, "embsum_scoring_seconds")
    handling = delta_mean(out, "grpc_server_handling_seconds", 'grpc_method="Rank"')
    # The overhead subtracts the scoring time measured inside the server in
    # the same run (same load, same cache state); the stand-alone benchmark
    # is the fallback when /metrics was not scraped.
    scoring = scoring_server if scoring_server is not None else scoring_bench
    floor = echo["latency_seconds"]["p50"]
    rank_p50 = rank1["latency_seconds"]["p50"]
    overhead = rank_p50 - scoring if scoring is not None else None

    rows = [
        ("gRPC echo floor, concurrency 1 (p50 / p99)",
         "%s / %s" % (ms(floor), ms(echo["latency_seconds"]["p99"]))),
        ("gRPC echo closed-loop throughput, concurrency %d" % echo_cap["concurrency"],
         "%.0f /s" % echo_cap["qps"]),
        ("Rank, concurrency 1 (p50 / p99)",
         "%s / %s" % (ms(rank_p50), ms(rank1["latency_seconds"]["p99"]))),
        ("Rank closed-loop capacity (best concurrency: %d)" % best["concurrency"],
         "%.0f /s (p50 %s, p99 %s)" % (best["qps"], ms(best["latency_seconds"]["p50"]),
                                       ms(best["latency_seconds"]["p99"]))),
    ]
    for p in (50, 80):
        r = opens[p]
        rows.append((
            "Rank open loop at %d%% of capacity (%.0f /s offered, Poisson): p50 / p99 / p99.9" % (p, r["rate"]),
            "%s / %s / %s (%.0f OK/s, %d errors)" % (
                ms(r["latency_seconds"]["p50"]), ms(r["latency_seconds"]["p99"]),
                ms(r["latency_seconds"]["p999"]), r["qps"], r["errors"])))
    bench_detail = ""
    if bench:
        bench_detail = " (min %s; sgemm bound p50 %s)" % (
            ms(bench.get("ours_seconds_min")), ms(bench.get("sgemm_bound_seconds_p50")))
    rows.append(("Scoring alone, p50 (embsum-bench-scoring, %s, cpu)" % (bench.get("dtype", "fp32") if bench else "fp32"),
                 ms(scoring_bench) + bench_detail))
    rows.append(("Scoring inside the server, mean (embsum_scoring_seconds)", ms(scoring_server)))
    rows.append(("Server handling of Rank, mean (grpc_server_handling_seconds)", ms(handling)))
    one_path = os.path.join(out, "rank_c1_one.json")
    one = one_handling = one_scoring = None
    if os.path.exists(one_path):
        one = load(one_path)
        spans = ("metrics_after_c1.txt", "metrics_after_c1_one.txt")
        one_handling = delta_mean(out, "grpc_server_handling_seconds", 'grpc_method="Rank"', *spans)
        one_scoring = delta_mean(out, "embsum_scoring_seconds", "", *spans)
        rows.append(("Rank with 1 candidate, concurrency 1: p50; server handling mean; scoring mean",
                     "%s; %s; %s" % (ms(one["latency_seconds"]["p50"]), ms(one_handling), ms(one_scoring))))
    rows.append(("Server overhead: Rank p50 at concurrency 1 - scoring (%s; target <= 2 x floor = %s)" % (
        "server mean" if scoring_server is not None else "bench p50", ms(2 * floor)), ms(overhead)))

    print("| S1: m=%d n=%d d=%d, %s candidates | measured |" % (
        bench["user_codes"] if bench else 32, bench["item_codes"] if bench else 8,
        bench["dim"] if bench else 512, rank1["candidates"]))
    print("|---|---|")
    for name, value in rows:
        print("| %s | %s |" % (name, value))
    summary = {
        "echo_floor_p50_seconds": floor,
        "echo_floor_p99_seconds": echo["latency_seconds"]["p99"],
        "echo_capacity_qps": echo_cap["qps"],
        "rank_c1_p50_seconds": rank_p50,
        "rank_c1_p99_seconds": rank1["latency_seconds"]["p99"],
        "capacity_qps": best["qps"],
        "capacity_concurrency": best["concurrency"],
        "open_loop": {str(p): {"rate": opens[p]["rate"], "qps": opens[p]["qps"],
                               "errors": opens[p]["errors"],
                               "latency_seconds": opens[p]["latency_seconds"]} for p in (50, 80)},
        "scoring_bench_p50_seconds": scoring_bench,
        "scoring_server_mean_seconds": scoring_server,
        "rank_server_handling_mean_seconds": handling,
        "server_overhead_seconds": overhead,
        "overhead_within_2x_floor": overhead is not None and overhead <= 2 * floor,
        "request_bytes": rank1["mean_request_bytes"],
        "rank_response_bytes": rank1["mean_response_bytes"],
        "echo_response_bytes": echo["mean_response_bytes"],
        "rank_one_candidate_p50_seconds": one["latency_seconds"]["p50"] if one else None,
        "rank_one_candidate_handling_mean_seconds": one_handling,
        "rank_one_candidate_scoring_mean_seconds": one_scoring,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("capacity", "table"):
        sys.exit(__doc__)
    if sys.argv[1] == "capacity":
        print("%.1f" % best_closed(sys.argv[2])["qps"])
    else:
        table(sys.argv[2])


if __name__ == "__main__":
    main()
