#!/usr/bin/python3
"""Overload and soak benchmarks of embsum-server (issue 8). Not tests: they
print figures, they assert nothing.

  overload  Measures closed-loop capacity, then drives an open loop at
            FACTOR x capacity (default 2) and reports: requests admitted
            (OK) and shed (RESOURCE_EXHAUSTED), the shed ratio, the p99 of
            admitted requests, the server's embsum_shed_total, and its RSS
            (peak and end) against the RSS before the run.
  soak      Drives a steady open loop at FRACTION x capacity (default 0.5)
            for --duration seconds (default 600) in --interval slices and
            reports per slice and overall: errors by code, p99, and the
            server's RSS; the headline is RSS growth from the end of the
            first slice (warm) to the end of the run.

Both generate a model (embsum-datagen), ingest it, start embsum-server on
loopback ports and drive it with embsum-loadgen; results (JSON reports,
server log, summary.json) land in --out.

Example (after building embsum-server embsum-loadgen embsum-datagen
embsum-ingest):
  /usr/bin/python3 benchmarks/hardening/hardening_bench.py overload \
      --build_dir=build-default --out=/tmp/overload
  /usr/bin/python3 benchmarks/hardening/hardening_bench.py soak \
      --build_dir=build-default --out=/tmp/soak --duration=600
"""
import argparse
import csv
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"hardening_bench: {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    """Samples a process's RSS every `period` seconds."""

    def __init__(self, pid, period=0.5):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.samples.append((time.time(), rss_bytes(self.pid)))
            except OSError:
                return
            self.stop.wait(self.period)

    def finish(self):
        self.stop.set()
        self.join()
        return self.samples


class Bench:
    def __init__(self, args):
        self.args = args
        b = args.build_dir
        self.server_bin = os.path.join(b, "tools/server/embsum-server")
        self.loadgen_bin = os.path.join(b, "tools/loadgen/embsum-loadgen")
        self.datagen_bin = os.path.join(b, "tools/datagen/embsum-datagen")
        self.ingest_bin = os.path.join(b, "tools/ingest/embsum-ingest")
        for path in (self.server_bin, self.loadgen_bin, self.datagen_bin,
                     self.ingest_bin):
            if not os.access(path, os.X_OK):
                sys.exit(f"hardening_bench: {path} is missing; build it first")
        os.makedirs(args.out, exist_ok=True)
        self.out = os.path.abspath(args.out)
        self.work = tempfile.mkdtemp(prefix="embsum-hardening-")
        self.commands = open(os.path.join(self.out, "commands.txt"), "w")
        self.commands.write(
            f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
            f"host {socket.gethostname()}, {os.cpu_count()} CPUs, "
            f"load average {open('/proc/loadavg').read().split()[:3]}\n")

    def run(self, cmd, **kw):
        self.commands.write(" ".join(cmd) + "\n")
        self.commands.flush()
        return subprocess.run(cmd, check=True, **kw)

    def prepare(self):
        a = self.args
        model = os.path.join(self.work, "model")
        data = os.path.join(self.work, "data")
        log(f"model: {a.users} users, {a.items} items, d={a.dim} "
            f"m={a.user_codes} n={a.item_codes}")
        self.run([self.datagen_bin, f"--out={model}", f"--users={a.users}",
                  f"--items={a.items}", f"--dim={a.dim}",
                  f"--user_codes={a.user_codes}",
                  f"--item_codes={a.item_codes}", "--seed=1",
                  "--impressions=10"], stdout=subprocess.DEVNULL)
        self.run([self.ingest_bin, f"--model_dir={model}",
                  f"--data_dir={data}"], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
        self.model, self.data = model, data

    def start_server(self):
        a = self.args
        self.port, self.metrics_port = free_port(), free_port()
        cmd = [self.server_bin, f"--data_dir={self.data}",
               f"--listen=127.0.0.1:{self.port}",
               f"--admin_listen=127.0.0.1:{free_port()}",
               f"--metrics_listen=127.0.0.1:{self.metrics_port}",
               f"--queue_size={a.queue_size}", *a.server_flag]
        self.commands.write(" ".join(cmd) + " &\n")
        self.server_log = open(os.path.join(self.out, "server.log"), "w")
        self.server = subprocess.Popen(cmd, stdout=self.server_log,
                                       stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            with open(os.path.join(self.out, "server.log")) as f:
                if "event=start " in f.read():
                    return
            if self.server.poll() is not None:
                sys.exit("hardening_bench: server exited; see server.log")
            time.sleep(0.1)
        sys.exit("hardening_bench: server did not start")

    def stop_server(self):
        self.server.terminate()
        self.server.wait(timeout=60)
        self.server_log.close()

    def metric(self, name):
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics",
            timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if re.match(re.escape(name) + r"(\{| )", line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def loadgen(self, name, *flags, duration, warmup):
        a = self.args
        report = os.path.join(self.out, f"{name}.json")
        spectrum = os.path.join(self.out, f"{name}.csv")
        self.run([self.loadgen_bin, f"--target=127.0.0.1:{self.port}",
                  f"--model_dir={self.model}", f"--candidates={a.candidates}",
                  f"--duration={duration}", f"--warmup={warmup}",
                  f"--channels={a.channels}", "--progress=false",
                  f"--deadline={a.deadline}", f"--json={report}",
                  f"--csv={spectrum}", *flags],
                 stdout=subprocess.DEVNULL)
        with open(report) as f:
            result = json.load(f)
        with open(spectrum) as f:
            result["spectrum"] = [(float(r["percentile"]),
                                   float(r["latency_seconds"]))
                                  for r in csv.DictReader(f)]
        return result

    def capacity(self):
        best = 0.0
        for c in self.args.capacity_concurrency:
            r = self.loadgen(f"capacity_c{c}", f"--concurrency={c}",
                             duration=self.args.capacity_seconds, warmup=2)
            log(f"closed loop, concurrency {c}: {r['qps']:.0f} OK/s, "
                f"p99 {r['latency_seconds']['p99'] * 1e3:.2f} ms")
            best = max(best, r["qps"])
        return best


def quantile(spectrum, q):
    """Latency at percentile q (0..100) of a loadgen spectrum, log-linear
    interpolation between its points."""
    prev = spectrum[0]
    for point in spectrum:
        if point[0] >= q:
            if point[0] == prev[0] or prev[1] <= 0:
                return point[1]
            f = (q - prev[0]) / (point[0] - prev[0])
            return math.exp(math.log(prev[1]) +
                            f * (math.log(point[1]) - math.log(prev[1])))
        prev = point
    return spectrum[-1][1]


def admitted_p99(result):
    """p99 of the OK requests, from intended send time (loadgen corrects
    for coordinated omission). The loadgen histogram holds every completed
    request; shed ones (RESOURCE_EXHAUSTED) are answered at admission, before
    any work, so they are the fastest. Under that ordering the admitted
    p99 is the overall quantile at (shed + 0.99 * ok) / total."""
    codes = result["codes"]
    ok = codes.get("OK", 0)
    total = sum(codes.values())
    if ok == 0:
        return float("nan")
    fast = total - ok
    return quantile(result["spectrum"], 100 * (fast + 0.99 * ok) / total)


def overload(args):
    bench = Bench(args)
    bench.prepare()
    bench.start_server()
    try:
        cap = bench.capacity()
        rate = cap * args.factor
        log(f"capacity {cap:.0f}/s; open loop at {args.factor}x = {rate:.0f}/s "
            f"for {args.duration}s")
        shed_before = bench.metric("embsum_shed_total")
        rss_before = rss_bytes(bench.server.pid)
        sampler = RssSampler(bench.server.pid)
        sampler.start()
        r = bench.loadgen("overload", f"--rate={rate}",
                          f"--max_in_flight={args.max_in_flight}",
                          duration=args.duration, warmup=args.warmup)
        samples = sampler.finish()
        shed_after = bench.metric("embsum_shed_total")
        rss_end = rss_bytes(bench.server.pid)
    finally:
        bench.stop_server()
    codes = r["codes"]
    total = sum(codes.values())
    shed = codes.get("RESOURCE_EXHAUSTED", 0)
    other = total - shed - codes.get("OK", 0)
    summary = {
        "capacity_qps": cap,
        "offered_qps": r["offered_qps"],
        "factor": args.factor,
        "duration_s": args.duration,
        "ok_qps": r["qps"],
        "codes": codes,
        "shed_ratio": shed / total if total else 0.0,
        "other_errors": other,
        "admitted_p99_seconds": admitted_p99(r),
        "all_p99_seconds": r["latency_seconds"]["p99"],
        "all_service_p99_seconds": r["service_latency_seconds"]["p99"],
        "all_max_seconds": r["latency_seconds"]["max"],
        "server_shed_total": shed_after - shed_before,
        "rss_before_bytes": rss_before,
        "rss_peak_bytes": max(s[1] for s in samples),
        "rss_end_bytes": rss_end,
        "server_flags": [f"--queue_size={args.queue_size}", *args.server_flag],
    }
    with open(os.path.join(bench.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


def soak(args):
    bench = Bench(args)
    bench.prepare()
    bench.start_server()
    slices = []
    try:
        cap = bench.capacity()
        rate = cap * args.fraction
        log(f"capacity {cap:.0f}/s; soak at {rate:.0f}/s for "
            f"{args.duration}s in {args.interval}s slices")
        rss_start = rss_bytes(bench.server.pid)
        sampler = RssSampler(bench.server.pid, period=1.0)
        sampler.start()
        elapsed = 0
        while elapsed < args.duration:
            n = len(slices)
            r = bench.loadgen(f"soak_{n:03d}", f"--rate={rate}",
                              duration=args.interval,
                              warmup=args.warmup if n == 0 else 0)
            elapsed += args.interval
            rss = rss_bytes(bench.server.pid)
            slices.append({"t_s": elapsed, "ok_qps": r["qps"],
                           "errors": r["errors"], "codes": r["codes"],
                           "p99_seconds": r["latency_seconds"]["p99"],
                           "rss_bytes": rss})
            log(f"t={elapsed}s ok {r['qps']:.0f}/s errors {r['errors']} "
                f"p99 {r['latency_seconds']['p99'] * 1e3:.2f} ms "
                f"rss {rss / 2**20:.1f} MiB")
        samples = sampler.finish()
    finally:
        bench.stop_server()
    codes = {}
    for s in slices:
        for k, v in s["codes"].items():
            codes[k] = codes.get(k, 0) + v
    warm = slices[0]["rss_bytes"]
    end = slices[-1]["rss_bytes"]
    summary = {
        "capacity_qps": cap,
        "rate_qps": rate,
        "duration_s": args.duration,
        "requests": sum(codes.values()),
        "codes": codes,
        "errors": sum(s["errors"] for s in slices),
        "p99_seconds_worst_slice": max(s["p99_seconds"] for s in slices),
        "p99_seconds_first_last": [slices[0]["p99_seconds"],
                                   slices[-1]["p99_seconds"]],
        "rss_before_load_bytes": rss_start,
        "rss_warm_bytes": warm,
        "rss_end_bytes": end,
        "rss_peak_bytes": max(s[1] for s in samples),
        "rss_growth_bytes": end - warm,
        "rss_growth_ratio": (end - warm) / warm if warm else 0.0,
        "slices": slices,
    }
    with open(os.path.join(bench.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "slices"},
                     indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["overload", "soak"])
    p.add_argument("--build_dir", default="build")
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=10000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--user_codes", type=int, default=32)
    p.add_argument("--item_codes", type=int, default=8)
    p.add_argument("--candidates", default="500")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--deadline", type=float, default=10)
    p.add_argument("--queue_size", type=int, default=128,
                   help="embsum-server --queue_size (admission queue)")
    p.add_argument("--server_flag", action="append", default=[],
                   help="extra embsum-server flag (repeatable)")
    p.add_argument("--capacity_concurrency", type=int, nargs="+",
                   default=[4, 16])
    p.add_argument("--capacity_seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--duration", type=float, default=None,
                   help="overload: 30 s; soak: 600 s")
    p.add_argument("--factor", type=float, default=2.0,
                   help="overload: offered rate / capacity")
    p.add_argument("--max_in_flight", type=int, default=10000)
    p.add_argument("--fraction", type=float, default=0.5,
                   help="soak: rate / capacity")
    p.add_argument("--interval", type=int, default=60,
                   help="soak: seconds per slice")
    args = p.parse_args()
    if args.duration is None:
        args.duration = 30 if args.mode == "overload" else 600
    (overload if args.mode == "overload" else soak)(args)


if __name__ == "__main__":
    main()
