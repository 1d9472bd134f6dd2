#!/usr/bin/python3
"""Benchmark of the write path (issue 21 item 7, docs/operations.md "Writes
through the log"), all in one run on one machine:

  1. write throughput and ack latency (p50/p99) of sequential single-record
     UpsertItems: applied locally (no log, the peer) against through the
     log (a 3-node NATS JetStream cluster, stream R=3, two servers);
  2. replication lag p50/p99 (publish to applied on the other server,
     from embsum_write_log_apply_delay_seconds) at --rate writes/s with
     Rank load (embsum-loadgen) beside it;
  3. Rank p50/p99 on that server without and with the write load.

Not a test: it asserts nothing and prints one JSON object (also written to
--json). Every process runs on loopback and is stopped at the end.

  cmake --build build --target embsum-server embsum-ingest embsum-datagen \\
      embsum-loadgen
  PYTHONPATH=build/tools/server/python:tests/fault \\
  EMBSUM_SERVER=build/tools/server/embsum-server \\
  EMBSUM_INGEST=build/tools/ingest/embsum-ingest \\
  EMBSUM_DATAGEN=build/tools/datagen/embsum-datagen \\
  /usr/bin/python3 benchmarks/write_log/run.py \\
      --loadgen=build/tools/loadgen/embsum-loadgen --json=/tmp/wl.json
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

import embsum_harness as h


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_nats(work, nodes=3):
    nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
    ports = [(free_port(), free_port()) for _ in range(nodes)]
    procs = []
    for i, (client, route) in enumerate(ports):
        log = os.path.join(work, f"nats-{i}.log")
        routes = ",".join(f"nats://127.0.0.1:{r}"
                          for j, (_, r) in enumerate(ports) if j != i)
        with open(log, "w") as out:
            procs.append((subprocess.Popen(
                [nats, "-js", "-a", "127.0.0.1", "-p", str(client), "-sd",
                 os.path.join(work, f"nats-{i}"), "-n", f"n{i}",
                 "--cluster_name", "bench", "--cluster",
                 f"nats://127.0.0.1:{route}", "--routes", routes],
                stdout=out, stderr=subprocess.STDOUT), log))
    for p, log in procs:
        wait_for(lambda: "Server is ready" in open(log).read(), "nats")
    return [p for p, _ in procs], ",".join(
        f"nats://127.0.0.1:{c}" for c, _ in ports)


def histogram(server, name, **labels):
    """{upper bound: cumulative count} of one histogram series."""
    with urllib.request.urlopen(f"http://{server.metrics_listen}/metrics",
                                timeout=10) as r:
        text = r.read().decode()
    want = {f'{k}="{v}"' for k, v in labels.items()}
    out = {}
    for line in text.splitlines():
        m = re.match(name + r"_bucket\{([^}]*)\} (\S+)$", line)
        if not m:
            continue
        parts = set(m.group(1).split(","))
        le = next(p for p in parts if p.startswith("le="))
        if parts - {le} == want:
            out[float(le[4:-1].replace("+Inf", "inf"))] = float(m.group(2))
    return out


def quantile_bound(before, after, q):
    """The upper bound of the bucket holding quantile q of the
    observations between two reads of a cumulative histogram."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1]
    if total == 0:
        return None
    for b, c in zip(bounds, counts):
        if c >= q * total:
            return b
    return bounds[-1]


def percentiles(values):
    return {"p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "n": len(values)}


def write_burst(server, n, rng, dim, codes, keys):
    admin = server.admin()
    lat = []
    start = time.perf_counter()
    for i in range(n):
        r = h.item_record(
            f"bench-{i % 1000}",
            rng.standard_normal((codes, dim)).astype(np.float32),
            rng.standard_normal((codes, dim)).astype(np.float32)
            if keys else None)
        t = time.perf_counter()
        admin.UpsertItems(iter([r]), timeout=30)
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - start), percentiles(lat)


def loadgen(args, target, model, seconds, out):
    r = subprocess.run(
        [args.loadgen, f"--target={target}", f"--model_dir={model}",
         f"--candidates={args.candidates}",
         f"--concurrency={args.concurrency}", f"--duration={seconds}",
         f"--json={out}"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"loadgen failed: {r.stderr}")
    with open(out) as f:
        rep = json.load(f)
    return {"qps": rep["qps"], "errors": rep["errors"],
            "p50": rep["latency_seconds"]["p50"],
            "p99": rep["latency_seconds"]["p99"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loadgen", required=True)
    p.add_argument("--json", default="")
    p.add_argument("--writes", type=int, default=500)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="embsum-wlbench-")
    servers, nats = [], []
    result = {"cpu": open("/proc/cpuinfo").read().split("model name")[1]
              .split("\n")[0].strip(": \t"), "cores": os.cpu_count()}
    try:
        model = h.datagen(os.path.join(work, "model"), users=2000,
                          items=2000, dim=64, user_codes=8, item_codes=4,
                          model_version="bench-1")
        manifest = json.load(open(os.path.join(model, "manifest.json")))
        rng = np.random.default_rng(1)

        def server(name, extra):
            data = os.path.join(work, name)
            r = h.ingest(model, data)
            assert r.returncode == 0, r.stderr
            s = h.Server(data, os.path.join(work, f"{name}.log"),
                         extra=extra).start()
            assert s.started, s.read_log()
            servers.append(s)
            return s

        local = server("local", [])
        qps, lat = write_burst(local, args.writes, rng, 64, 4,
                               manifest["item_keys"])
        result["local_apply"] = {"writes_per_second": qps,
                                 "ack_seconds": lat}
        local.stop()

        procs, urls = start_nats(work)
        nats.extend(procs)
        flags = [f"--write_log={urls}", "--write_log_replicas=3"]
        a = server("a", flags)
        b = server("b", flags)
        for s in (a, b):
            wait_for(lambda: "event=write_log_caught_up" in s.read_log(),
                     "catch-up")
        qps, lat = write_burst(a, args.writes, rng, 64, 4,
                               manifest["item_keys"])
        result["through_log"] = {"writes_per_second": qps,
                                 "ack_seconds": lat}

        result["rank_without_writes"] = loadgen(
            args, b.listen, model, args.seconds,
            os.path.join(work, "lg0.json"))

        before = histogram(b, "embsum_write_log_apply_delay_seconds",
                           lane="items")
        stop = threading.Event()
        sent = [0]

        def writer():
            admin = a.admin()
            period = 1.0 / args.rate
            nxt = time.perf_counter()
            while not stop.is_set():
                r = h.item_record(
                    f"lag-{sent[0] % 1000}",
                    rng.standard_normal((4, 64)).astype(np.float32),
                    rng.standard_normal((4, 64)).astype(np.float32)
                    if manifest["item_keys"] else None)
                admin.UpsertItems(iter([r]), timeout=30)
                sent[0] += 1
                nxt += period
                delay = nxt - time.perf_counter()
                if delay > 0:
                    stop.wait(delay)

        t = threading.Thread(target=writer)
        start = time.perf_counter()
        t.start()
        result["rank_with_writes"] = loadgen(
            args, b.listen, model, args.seconds,
            os.path.join(work, "lg1.json"))
        stop.set()
        t.join()
        achieved = sent[0] / (time.perf_counter() - start)
        after = histogram(b, "embsum_write_log_apply_delay_seconds",
                          lane="items")
        result["replication_lag"] = {
            "target_rate": args.rate, "achieved_rate": achieved,
            "p50_bucket_upper_bound_seconds":
                quantile_bound(before, after, 0.5),
            "p99_bucket_upper_bound_seconds":
                quantile_bound(before, after, 0.99)}
        result["rank_p99_ratio_with_to_without"] = (
            result["rank_with_writes"]["p99"] /
            result["rank_without_writes"]["p99"])
    finally:
        for s in servers:
            s.stop()
        for p in nats:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
