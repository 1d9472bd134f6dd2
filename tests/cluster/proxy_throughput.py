#!/usr/bin/python3
"""Throughput through HAProxy against direct to one server (a measurement,
not a test; docs/operations.md "Sharded deployment" quotes its output).

  tests/cluster/proxy_throughput.py --build_dir=build [--runs=5]

Three set-ups on the same model, measured in alternation so that machine
noise hits them alike, each with embsum-loadgen --concurrency=C:
  direct   one unsharded embsum-server, no proxy (the peer);
  proxy1   the same single server behind HAProxy (the proxy's own cost);
  cluster  embsum-local-cluster, 2 shards x 2 replicas behind HAProxy.
Prints one JSON line per run and a summary (median, min, max qps; p50).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          **kw)


def start_cluster(tool, build, model, work, shards, replicas):
    proc = subprocess.Popen(
        [tool, f"--model_dir={model}", f"--work_dir={work}",
         f"--shards={shards}", f"--replicas={replicas}",
         "--listen=127.0.0.1:0", f"--build_dir={build}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(work, "cluster.json")
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"cluster under {work} did not start")
        time.sleep(0.1)
    with open(path) as f:
        return proc, json.load(f)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build_dir", default=os.path.join(CHECKOUT, "build"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--user_codes", type=int, default=8)
    p.add_argument("--item_codes", type=int, default=4)
    a = p.parse_args()
    build = os.path.abspath(a.build_dir)
    tool = os.path.join(CHECKOUT, "tools", "embsum-local-cluster")
    loadgen = os.path.join(build, "tools/loadgen/embsum-loadgen")
    tmp = tempfile.mkdtemp(prefix="embsum-proxy-bench-")
    model = os.path.join(tmp, "model")
    run([os.path.join(build, "tools/datagen/embsum-datagen"), f"--out={model}",
         f"--users={a.users}", f"--items={a.items}", f"--dim={a.dim}",
         f"--user_codes={a.user_codes}", f"--item_codes={a.item_codes}",
         "--seed=1", "--impression_size=2"])
    procs, targets = [], {}
    try:
        # "direct" and "proxy1" are the same server: the one replica of a
        # 1 x 1 cluster, reached without and with HAProxy.
        proc, one = start_cluster(tool, build, model,
                                  os.path.join(tmp, "one"), 1, 1)
        procs.append(proc)
        targets["direct"] = one["servers"][0]["listen"]
        targets["proxy1"] = one["proxy"]["listen"]
        proc, two = start_cluster(tool, build, model,
                                  os.path.join(tmp, "two"), 2, 2)
        procs.append(proc)
        targets["cluster"] = two["proxy"]["listen"]
        results = {k: [] for k in targets}
        for i in range(a.runs):
            for name, target in targets.items():
                out = os.path.join(tmp, f"{name}-{i}.json")
                run([loadgen, f"--target={target}", f"--model_dir={model}",
                     f"--candidates={a.candidates}",
                     f"--concurrency={a.concurrency}",
                     f"--duration={a.duration}", "--warmup=1",
                     f"--json={out}"], timeout=a.duration + 120)
                with open(out) as f:
                    r = json.load(f)
                row = {"setup": name, "run": i, "qps": round(r["qps"], 1),
                       "errors": r["errors"], "codes": r["codes"],
                       "p50_ms": round(r["latency_seconds"]["p50"] * 1e3, 3)}
                print(json.dumps(row), flush=True)
                results[name].append(row)
        print("summary (qps median [min, max], p50 ms median):")
        base = statistics.median(r["qps"] for r in results["direct"])
        for name, rows in results.items():
            q = [r["qps"] for r in rows]
            print(f"  {name:8s} {statistics.median(q):8.1f} "
                  f"[{min(q):.1f}, {max(q):.1f}]  "
                  f"p50 {statistics.median(r['p50_ms'] for r in rows):.3f}  "
                  f"ratio to direct {statistics.median(q) / base:.2f}  "
                  f"errors {sum(r['errors'] for r in rows)}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
