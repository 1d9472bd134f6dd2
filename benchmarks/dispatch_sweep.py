#!/usr/bin/python3
"""Runs embsum-bench-scoring --json RUNS times per dtype and thread count
and prints, per run, the kernel dispatch chose, dispatch_regret (chosen
family's p50 / fastest family's p50, both timed in that run), every
family's p50, and the ratios to the machine's peaks measured in that run.
A benchmark, not a test (docs/scoring.md, "Dispatch and the machine's
bound").

    /usr/bin/python3 benchmarks/dispatch_sweep.py \
        --bench=build/benchmarks/embsum-bench-scoring --runs=5
"""
import argparse
import json
import subprocess
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench", default="build/benchmarks/embsum-bench-scoring")
    p.add_argument("--dtypes", default="fp32,fp16,bf16,int8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--arena_rows", type=int, default=40000)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--json", help="also write every run's JSON here")
    args = p.parse_args()
    results = []
    print(f"{'dtype':5} {'thr':>3} {'run':>3} {'kernel':>11} {'regret':>7} "
          f"{'ours ms':>8} {'fp32pk':>7} {'dtypepk':>8} {'r_fp32':>6} "
          f"{'r_dtype':>7} {'r_bf16':>6} {'r_int8':>6} {'reg_q1':>6} {'r_uq':>5}  "
          "families (p50 ms)")
    for dtype in args.dtypes.split(","):
        for threads in args.threads.split(","):
            for run in range(args.runs):
                cmd = [args.bench, "--json", f"--dtype={dtype}",
                       f"--threads={threads}", f"--arena_rows={args.arena_rows}",
                       f"--reps={args.reps}", f"--seed={run + 1}"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"{' '.join(cmd)}: {r.stderr}")
                j = json.loads(r.stdout.strip().splitlines()[-1])
                results.append(j)
                fams = " ".join(f"{f['kernel']}:{f['seconds_p50'] * 1e3:.2f}"
                                for f in j["families"])
                print(f"{dtype:5} {threads:>3} {run:>3} {j['kernel']:>11} "
                      f"{j['dispatch_regret']:7.3f} "
                      f"{j['ours_seconds_p50'] * 1e3:8.3f} "
                      f"{j['peak_gflops']:7.1f} {j['dtype_peak_gflops']:8.1f} "
                      f"{j['ratio_to_peak']:6.3f} {j['ratio_to_dtype_peak']:7.3f} "
                      f"{j['ratio_to_bf16_dot_peak']:6.3f} "
                      f"{j['ratio_to_int8_dot_peak']:6.3f} "
                      f"{j['dispatch_regret_p25']:6.3f} "
                      f"{j['ratio_to_peak_upper_quartile']:5.3f}  {fams}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
