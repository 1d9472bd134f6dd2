#!/usr/bin/python3
"""Ours beside PyTorch in the same run: for each dtype and thread count,
embsum-bench-scoring --json and benchmarks/peer/pytorch_peer.py on the same
shape, arena size and conditions, one after the other, then a table of the
medians and ours / PyTorch (time; below 0.25 meets the 4x target of
docs/design.md section 8). A benchmark, not a test.

    /usr/bin/python3 benchmarks/peer/ours_vs_pytorch.py \
        --bench=build/benchmarks/embsum-bench-scoring --arena_rows=40000
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"ours_vs_pytorch: {' '.join(cmd)} failed "
                 f"({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", default="build/benchmarks/embsum-bench-scoring")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--arena_rows", type=int, default=40000)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--candidates", type=int, default=500)
    p.add_argument("--json", help="also write every result to this file")
    args = p.parse_args()
    rows = []
    for dtype in args.dtypes.split(","):
        for threads in args.threads.split(","):
            common = [f"--dtype={dtype}", f"--threads={threads}",
                      f"--arena_rows={args.arena_rows}", f"--reps={args.reps}",
                      f"--candidates={args.candidates}"]
            ours = run_json([args.bench, "--json"] + common)
            torch = run_json([sys.executable,
                              os.path.join(HERE, "pytorch_peer.py")] + common)
            rows.append({"dtype": dtype, "threads": int(threads),
                         "ours": ours, "pytorch": torch,
                         "ours_over_pytorch":
                             ours["ours_seconds_p50"] / torch["seconds_p50"]})
    print(f"{'dtype':6} {'thr':>3} {'kernel':>12} {'ours p50 ms':>12} "
          f"{'torch p50 ms':>13} {'ours/torch':>10} {'speed-up':>9}")
    for r in rows:
        o, t = r["ours"], r["pytorch"]
        print(f"{r['dtype']:6} {r['threads']:>3} {o['kernel']:>12} "
              f"{o['ours_seconds_p50'] * 1e3:12.3f} "
              f"{t['seconds_p50'] * 1e3:13.3f} {r['ours_over_pytorch']:10.3f} "
              f"{1 / r['ours_over_pytorch']:8.1f}x")
    print(f"cpu: {rows[0]['ours'].get('cpu_model', '?')}; "
          f"torch {rows[0]['pytorch']['torch_version']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
