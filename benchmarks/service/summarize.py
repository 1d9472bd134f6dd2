"""Summarizes a benchmarks/service/run_s1.sh result folder.

  summarize.py capacity DIR   prints the closed-loop capacity (Rank/s): the
                              highest OK qps of rank_c1.json and
                              rank_closed_c*.json with < 0.1% errors
  summarize.py table DIR      prints the Performance table (Markdown) and
                              writes DIR/summary.json

Every server-side figure is taken per phase of the run: run_s1.sh scrapes
/metrics before and after each loadgen run (metrics_<phase>_before.txt,
metrics_<phase>_after.txt) and a histogram's mean over the phase is
(sum after - sum before) / (count after - count before). The targets of
docs/design.md section 8 are computed from figures of the same run:

  rank_c1:       Rank(C) p50 at concurrency 1 <= kernel all-threads p50
                 + 2 x echo p50
  rank_one_c1:   Rank(1) p50 at concurrency 1 <= 2 x echo p50
  capacity:      closed-loop capacity >= 80% of cores / kernel one-thread p50
  open_loop_80:  open loop at 80% of capacity: p99 <= 5 x the c=1 p50, and
                 no errors
  scoring_in_server: embsum_scoring_seconds mean over the c=1 phase <= 1.1 x
                 the kernel all-threads p50

Beside rank_c1 it reports the cold echo floor: the echo p50 at concurrency
1 while the echo server reads SWEEP_BYTES of memory before each answer,
minus its mean sweep time (echo_cold_c1.json, echo_cold.log), i.e. the
transport a request pays once its own work has evicted L1 and L2, and the
c=1 p50 against kernel all-threads + 2 x that floor.

Beside open_loop_80 it reports the queueing floor of that phase: the p99
time in system of Poisson arrivals at the same rate to `cores` servers that
each take exactly cores / capacity per request (M/D/c, first come first
served, simulated with a fixed seed). No server of that capacity that runs
one request per core does better; a target below it cannot be met at 80% of
capacity with Poisson arrivals, whatever the request path costs.
"""

import glob
import heapq
import json
import os
import random
import re
import sys

RANK = 'grpc_method="Rank"'
PHASES = ("user", "lookup", "score", "top_k", "response")


def load(path):
    with open(path) as f:
        return json.load(f)


def load_if(path):
    return load(path) if os.path.exists(path) else None


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
    if not os.path.exists(path):
        return None
    total = 0.0
    found = False
    rx = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)")
    with open(path) as f:
        for line in f:
            m = rx.match(line)
            if m and label_filter in (m.group(1) or ""):
                total += float(m.group(2))
                found = True
    return total if found else None


def phase_mean(out, phase, name, label_filter=""):
    """Mean of histogram `name` over one phase of the run (None if unknown)."""
    before = os.path.join(out, "metrics_%s_before.txt" % phase)
    after = os.path.join(out, "metrics_%s_after.txt" % phase)
    s0 = metric_sum(before, name + "_sum", label_filter)
    s1 = metric_sum(after, name + "_sum", label_filter)
    c0 = metric_sum(before, name + "_count", label_filter)
    c1 = metric_sum(after, name + "_count", label_filter)
    if None in (s0, s1, c0, c1) or c1 <= c0:
        return None
    return (s1 - s0) / (c1 - c0)


def server_phase(out, phase):
    """The server's own means over one loadgen phase."""
    handling = phase_mean(out, phase, "grpc_server_handling_seconds", RANK)
    scoring = phase_mean(out, phase, "embsum_scoring_seconds")
    parts = {p: phase_mean(out, phase, "embsum_rank_phase_seconds",
                           'phase="%s"' % p) for p in PHASES}
    queue = phase_mean(out, phase, "embsum_queue_wait_seconds", 'pool="rank"')
    outside = None
    if handling is not None and scoring is not None:
        outside = handling - scoring
    return {"handling_mean_seconds": handling,
            "scoring_mean_seconds": scoring,
            "handling_minus_scoring_seconds": outside,
            "queue_wait_mean_seconds": queue,
            "rank_phase_mean_seconds": parts}


def md_c_p99(cores, service, rate, arrivals=200000, seed=7):
    """p99 time in system of M/D/c: Poisson arrivals at `rate`, `cores`
    first-come-first-served servers, each request taking `service`."""
    rng = random.Random(seed)
    free = [0.0] * cores
    heapq.heapify(free)
    now = 0.0
    times = []
    for _ in range(arrivals):
        now += rng.expovariate(rate)
        start = max(now, heapq.heappop(free))
        heapq.heappush(free, start + service)
        times.append(start + service - now)
    times.sort()
    return times[int(0.99 * len(times))]


def cold_echo_floor(out):
    """(floor seconds, sweep bytes) from echo_cold_c1.json and echo_cold.log,
    or (None, None) when the run has no cold echo phase."""
    report = load_if(os.path.join(out, "echo_cold_c1.json"))
    path = os.path.join(out, "echo_cold.log")
    if not report or not os.path.exists(path):
        return None, None
    with open(path) as f:
        m = re.search(r"swept (\d+) bytes before each of (\d+) answers, "
                      r"mean_sweep_seconds=([0-9.eE+-]+)", f.read())
    if not m or int(m.group(2)) == 0:
        return None, None
    return report["latency_seconds"]["p50"] - float(m.group(3)), int(m.group(1))


def target(value, bound, at_most=True, extra_ok=True):
    if value is None or bound is None or bound <= 0:
        return {"value": value, "bound": bound, "ratio": None, "met": None}
    ok = (value <= bound) if at_most else (value >= bound)
    return {"value": value, "bound": bound, "ratio": value / bound,
            "met": bool(ok and extra_ok)}


def ms(seconds):
    return "n/a" if seconds is None else "%.3f ms" % (seconds * 1e3)


def verdict(t):
    if t["met"] is None:
        return "n/a"
    return "%s (ratio %.2f)" % ("met" if t["met"] else "MISSED", t["ratio"])


def table(out):
    echo = load(os.path.join(out, "echo_c1.json"))
    echo_cap = load(os.path.join(out, "echo_capacity.json"))
    rank1 = load(os.path.join(out, "rank_c1.json"))
    one = load_if(os.path.join(out, "rank_c1_one.json"))
    best = best_closed(out)
    opens = {p: load_if(os.path.join(out, "rank_open_%d.json" % p)) for p in (50, 80)}
    constant80 = load_if(os.path.join(out, "rank_open_80_constant.json"))
    bench = load_if(os.path.join(out, "bench_scoring.json"))
    bench1 = load_if(os.path.join(out, "bench_scoring_1t.json"))
    host = load_if(os.path.join(out, "host.json")) or {}
    cores = host.get("cores")

    floor = echo["latency_seconds"]["p50"]
    rank_p50 = rank1["latency_seconds"]["p50"]
    kernel_all = bench["ours_seconds_p50"] if bench else None
    kernel_one = bench1["ours_seconds_p50"] if bench1 else None

    phases = {"rank_c1": server_phase(out, "rank_c1")}
    if one:
        phases["rank_c1_one"] = server_phase(out, "rank_c1_one")
    for path in sorted(glob.glob(os.path.join(out, "rank_closed_c*.json"))):
        name = os.path.basename(path)[:-len(".json")]
        phases[name] = server_phase(out, name)
    for p in (50, 80):
        if opens[p]:
            phases["rank_open_%d" % p] = server_phase(out, "rank_open_%d" % p)
    if constant80:
        phases["rank_open_80_constant"] = server_phase(out, "rank_open_80_constant")
    c1 = phases["rank_c1"]
    cold_floor, sweep_bytes = cold_echo_floor(out)
    cold_bound = (kernel_all + 2 * cold_floor
                  if cold_floor is not None and kernel_all is not None else None)
    queueing_floor = None
    if opens[80] and cores and best["qps"] > 0:
        queueing_floor = md_c_p99(cores, cores / best["qps"], opens[80]["rate"])

    targets = {
        "rank_c1": target(rank_p50, None if kernel_all is None else kernel_all + 2 * floor),
        "rank_one_c1": target(one["latency_seconds"]["p50"] if one else None, 2 * floor),
        "capacity": target(best["qps"], (0.8 * cores / kernel_one)
                           if cores and kernel_one else None, at_most=False),
        "open_loop_80": target(opens[80]["latency_seconds"]["p99"] if opens[80] else None,
                               5 * rank_p50,
                               extra_ok=bool(opens[80]) and opens[80]["errors"] == 0),
        "scoring_in_server": target(c1["scoring_mean_seconds"],
                                    None if kernel_all is None else 1.1 * kernel_all),
    }

    rows = [
        ("gRPC echo floor, concurrency 1 (p50 / p99)",
         "%s / %s" % (ms(floor), ms(echo["latency_seconds"]["p99"]))),
        ("gRPC echo closed-loop throughput, concurrency %d" % echo_cap["concurrency"],
         "%.0f /s" % echo_cap["qps"]),
        ("Kernel alone (embsum-bench-scoring, %s): all threads p50 / one thread p50" % (
            bench.get("dtype", "fp32") if bench else "fp32"),
         "%s / %s" % (ms(kernel_all), ms(kernel_one))),
        ("Rank, concurrency 1 (p50 / p99)",
         "%s / %s" % (ms(rank_p50), ms(rank1["latency_seconds"]["p99"]))),
        ("  server, c=1 phase means: handling; scoring; handling - scoring; queue wait",
         "%s; %s; %s; %s" % (ms(c1["handling_mean_seconds"]), ms(c1["scoring_mean_seconds"]),
                             ms(c1["handling_minus_scoring_seconds"]),
                             ms(c1["queue_wait_mean_seconds"]))),
        ("  server, c=1 Rank phases: user; lookup; score; top_k; response",
         "; ".join(ms(c1["rank_phase_mean_seconds"][p]) for p in PHASES)),
    ]
    if cold_floor is not None:
        rows.insert(2, ("gRPC echo floor with cold caches (%d bytes swept before each answer): "
                        "p50 - mean sweep" % sweep_bytes, ms(cold_floor)))
    if one:
        o = phases["rank_c1_one"]
        rows.append(("Rank with 1 candidate, concurrency 1: p50; server handling mean; scoring mean",
                     "%s; %s; %s" % (ms(one["latency_seconds"]["p50"]),
                                     ms(o["handling_mean_seconds"]),
                                     ms(o["scoring_mean_seconds"]))))
    b = phases.get("rank_closed_c%d" % best["concurrency"], c1)
    rows.append(("Rank closed-loop capacity (best concurrency: %d)" % best["concurrency"],
                 "%.0f /s (p50 %s, p99 %s; scoring mean %s)" % (
                     best["qps"], ms(best["latency_seconds"]["p50"]),
                     ms(best["latency_seconds"]["p99"]), ms(b["scoring_mean_seconds"]))))
    for p in (50, 80):
        r = opens[p]
        if not r:
            continue
        rows.append((
            "Rank open loop at %d%% of capacity (%.0f /s offered, Poisson): p50 / p99 / p99.9" % (p, r["rate"]),
            "%s / %s / %s (%.0f OK/s, %d errors)" % (
                ms(r["latency_seconds"]["p50"]), ms(r["latency_seconds"]["p99"]),
                ms(r["latency_seconds"]["p999"]), r["qps"], r["errors"])))
    if queueing_floor is not None:
        rows.append((
            "  queueing floor at that rate: M/D/%d p99, %s per request (cores / capacity)" % (
                cores, ms(cores / best["qps"])),
            ms(queueing_floor)))
    if constant80:
        rows.append((
            "Rank open loop at 80%% of capacity (%.0f /s offered, constant spacing): p50 / p99 / p99.9" % constant80["rate"],
            "%s / %s / %s (%.0f OK/s, %d errors)" % (
                ms(constant80["latency_seconds"]["p50"]), ms(constant80["latency_seconds"]["p99"]),
                ms(constant80["latency_seconds"]["p999"]), constant80["qps"], constant80["errors"])))
    labels = {
        "rank_c1": "Target: Rank p50 c=1 <= kernel all-threads p50 + 2 x echo p50",
        "rank_one_c1": "Target: Rank(1) p50 c=1 <= 2 x echo p50",
        "capacity": "Target: capacity >= 80%% of %s cores / kernel one-thread p50" % cores,
        "open_loop_80": "Target: open loop 80%: p99 <= 5 x c=1 p50, no errors",
        "scoring_in_server": "Target: scoring in the server (c=1 mean) <= 1.1 x kernel all-threads p50",
    }
    cold = target(rank_p50, cold_bound)
    for key, label in labels.items():
        t = targets[key]
        if key == "capacity":
            shown = "%s /s vs %s /s" % ("n/a" if t["value"] is None else "%.0f" % t["value"],
                                        "n/a" if t["bound"] is None else "%.0f" % t["bound"])
        else:
            shown = "%s vs %s" % (ms(t["value"]), ms(t["bound"]))
        rows.append((label, "%s: %s" % (shown, verdict(t))))
        if key == "rank_c1" and cold["ratio"] is not None:
            rows.append(("  the same p50 vs kernel all-threads p50 + 2 x the cold echo floor",
                         "%s vs %s: ratio %.2f" % (ms(cold["value"]), ms(cold["bound"]),
                                                   cold["ratio"])))

    print("| S1: m=%d n=%d d=%d, %s candidates | measured |" % (
        bench["user_codes"] if bench else 32, bench["item_codes"] if bench else 8,
        bench["dim"] if bench else 512, rank1["candidates"]))
    print("|---|---|")
    for name, value in rows:
        print("| %s | %s |" % (name, value))
    summary = {
        "cores": cores,
        "cpu": host.get("cpu"),
        "echo_floor_p50_seconds": floor,
        "echo_floor_p99_seconds": echo["latency_seconds"]["p99"],
        "echo_capacity_qps": echo_cap["qps"],
        "kernel_all_threads_p50_seconds": kernel_all,
        "kernel_one_thread_p50_seconds": kernel_one,
        "rank_c1_p50_seconds": rank_p50,
        "rank_c1_p99_seconds": rank1["latency_seconds"]["p99"],
        "rank_one_candidate_p50_seconds": one["latency_seconds"]["p50"] if one else None,
        "capacity_qps": best["qps"],
        "capacity_concurrency": best["concurrency"],
        "open_loop": {str(p): {"rate": opens[p]["rate"], "qps": opens[p]["qps"],
                               "errors": opens[p]["errors"],
                               "latency_seconds": opens[p]["latency_seconds"]}
                      for p in (50, 80) if opens[p]},
        "echo_cold_floor_p50_seconds": cold_floor,
        "echo_cold_sweep_bytes": sweep_bytes,
        "rank_c1_vs_cold_floor": cold,
        "open_loop_80_queueing_floor_p99_seconds": queueing_floor,
        "open_loop_80_constant": ({"rate": constant80["rate"], "qps": constant80["qps"],
                                   "errors": constant80["errors"],
                                   "latency_seconds": constant80["latency_seconds"]}
                                  if constant80 else None),
        "server_phases": phases,
        "targets": targets,
        "request_bytes": rank1["mean_request_bytes"],
        "rank_response_bytes": rank1["mean_response_bytes"],
        "echo_response_bytes": echo["mean_response_bytes"],
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
