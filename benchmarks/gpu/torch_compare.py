#!/usr/bin/env python3
"""Second oracle for the device check: recomputes the scores that
embsum-gpu-check dumped (case_*.bin) in float64 with PyTorch, independently
of the C++ ReferenceScore, and compares. Also prints the final summary table
of run_device_check.sh (mode 'summary').

  torch_compare.py compare DUMP_DIR OUT_JSON
  torch_compare.py summary OUT_DIR
"""
import glob
import json
import os
import struct
import sys

import numpy as np


def load_case(path):
    with open(path, "rb") as f:
        m, n, d, c, has_q, has_k, dtype, _ = struct.unpack("<8i", f.read(32))

        def floats(count):
            return np.frombuffer(f.read(4 * count), dtype="<f4").astype(np.float64)

        a = floats(m * d).reshape(m, d)
        q = floats(m * d).reshape(m, d) if has_q else a
        b = floats(c * n * d).reshape(c, n, d)
        g = floats(c * n * d).reshape(c, n, d) if has_k else b
        scores = np.frombuffer(f.read(4 * c), dtype="<f4").astype(np.float64)
        codes = np.frombuffer(f.read(4 * c), dtype="<i4")
    return dict(m=m, n=n, d=d, c=c, dtype=dtype, a=a, q=q, b=b, g=g,
                scores=scores, codes=codes)


def compare(dump_dir, out_json):
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    worst = {0: 0.0, 1: 0.0, 2: 0.0}
    mismatches = 0
    for path in sorted(glob.glob(os.path.join(dump_dir, "case_*.bin"))):
        x = load_case(path)
        t = lambda v: torch.from_numpy(np.ascontiguousarray(v)).to(device)
        a, q, b, g = t(x["a"]), t(x["q"]), t(x["b"]), t(x["g"])
        k = torch.einsum("id,cjd->cij", a, b)          # (C, m, n)
        l = torch.einsum("id,cjd->cij", q, g)
        w = torch.softmax(l.reshape(x["c"], -1), dim=1).reshape_as(l)
        score = (w * k).sum(dim=(1, 2))
        magnitude = (w * k.abs()).sum(dim=(1, 2))
        # Sensitivity of the score to relative errors in the products of
        # both dot products (see Ref in gpu_check_common.h): the error scale.
        abs_k = torch.einsum("id,cjd->cij", a.abs(), b.abs())
        abs_l = torch.einsum("id,cjd->cij", q.abs(), g.abs())
        condition = (w * (abs_k + (k - score[:, None, None]).abs() * abs_l)).sum(dim=(1, 2))
        rows = (w * k).sum(dim=2)                      # (C, m)
        code = rows.argmax(dim=1)
        if x["m"] > 1:
            top2 = rows.topk(2, dim=1).values
            margin = (top2[:, 0] - top2[:, 1]) / magnitude.clamp_min(1e-300)
        else:
            margin = torch.full_like(score, float("inf"))
        ours = torch.from_numpy(x["scores"]).to(device)
        err = (ours - score).abs() / torch.maximum(score.abs(), condition)
        err = torch.where(torch.isfinite(ours), err, torch.full_like(err, float("inf")))
        codes = torch.from_numpy(x["codes"].astype(np.int64)).to(device)
        bad_codes = int(((codes != code) & (margin > 1e-3)).sum())
        max_err = float(err.max())
        worst[x["dtype"]] = max(worst[x["dtype"]], max_err)
        mismatches += bad_codes
        results.append(dict(case=os.path.basename(path), m=x["m"], n=x["n"],
                            d=x["d"], candidates=x["c"], dtype=x["dtype"],
                            max_rel_err=max_err, code_mismatch=bad_codes))
        print(f"  torch {os.path.basename(path)} m={x['m']} n={x['n']} "
              f"d={x['d']} dtype={x['dtype']} C={x['c']}: max rel err "
              f"{max_err:.3g}, code mismatches {bad_codes}")
    ok = (len(results) > 0 and worst[0] <= 1e-5 and worst[1] <= 1e-4
          and worst[2] <= 1e-4 and mismatches == 0)
    summary = dict(cases=len(results), torch=torch.__version__, device=device,
                   max_rel_err_fp32=worst[0], max_rel_err_fp16=worst[1],
                   max_rel_err_bf16=worst[2], code_mismatch=mismatches,
                   ok=ok, results=results)
    with open(out_json, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"torch float64 check: {len(results)} cases, max rel err fp32 "
          f"{worst[0]:.2e}, fp16 {worst[1]:.2e}, bf16 {worst[2]:.2e}, "
          f"code mismatches {mismatches}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def summary(out_dir):
    def load(name):
        try:
            with open(os.path.join(out_dir, name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    check = load("check.json")
    torch_json = load("torch.json")
    g = lambda key: check.get(key)
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
    print(f"\n=== embsum device check summary ({check.get('device', '?')}) ===")
    print(f"{'what':44s} {'fp32':>12s} {'fp16':>12s} {'bf16':>12s}")
    rows = [
        ("Rank(500) S1 kernel us (target <= 20)", "rank500_{}_kernel_us", ".2f"),
        ("  same, device only (no host launch latency)", "rank500_{}_device_us", ".2f"),
        ("  best correct variant, host-launched us", "rank500_{}_best_us", ".2f"),
        ("  best correct variant, device-only us", "rank500_{}_best_device_us", ".2f"),
        ("Score(500) end to end us", "score500_{}_end_to_end_us", ".1f"),
        ("1M scan ms", "scan_{}_ms", ".3f"),
        ("1M scan GB/s", "scan_{}_GBps", ".0f"),
        ("1M scan / copy bandwidth (target >= 0.70)", "scan_{}_frac_of_copy", ".2f"),
        ("  best correct variant / copy", "scan_{}_best_frac_of_copy", ".2f"),
        ("ScoreAllTopK(100) over 1M, ms", "topk_{}_ms", ".2f"),
        ("batch 256 users: gain vs 256 launches", "batch_{}_users256_gain", ".1f"),
        ("  same, variant l9_p2_e1", "batch_{}_variant_users256_gain", ".1f"),
        ("batch 256 users: us per user", None, ".2f"),
    ]
    for label, key, spec in rows:
        vals = []
        for dt in ("fp32", "fp16", "bf16"):
            if key is None:
                v = g(f"batch_{dt}_users256_us")
                v = None if v is None else v / 256
            else:
                v = g(key.format(dt))
            vals.append(fmt(v, spec))
        print(f"{label:44s} {vals[0]:>12s} {vals[1]:>12s} {vals[2]:>12s}")
    print(f"{'copy bandwidth GB/s (D2D, read+write)':44s} {fmt(g('copy_GBps'), '.0f'):>12s}")
    print(f"{'cuBLAS sgemm bound S1x500 us':44s} {fmt(g('sgemm_bound_rank500_us'), '.2f'):>12s}")
    for threads in (1, 8, 32, 128):
        a = g(f"concurrent_bf16_window0_threads{threads}_qps")
        b = g(f"concurrent_bf16_window100_threads{threads}_qps")
        gain = None if not a or b is None else b / a
        print(f"{'bf16 Score(500) calls/s, %3d threads: off/on/gain' % threads:44s} "
              f"{fmt(a, '.0f'):>12s} {fmt(b, '.0f'):>12s} {fmt(gain, '.2f'):>12s}")
    print(f"{'max rel err vs C++ float64 ref (fp32/16-bit)':44s} "
          f"{fmt(g('correct_max_rel_err_fp32'), '.1e'):>12s} "
          f"{fmt(g('correct_max_rel_err_16bit'), '.1e'):>12s}")
    print(f"{'variant (new modes) max rel err (fp32/16-bit)':44s} "
          f"{fmt(g('correct_variant_max_rel_err_fp32'), '.1e'):>12s} "
          f"{fmt(g('correct_variant_max_rel_err_16bit'), '.1e'):>12s}")
    print(f"{'max rel err vs torch float64 (fp32/fp16/bf16)':44s} "
          f"{fmt(torch_json.get('max_rel_err_fp32'), '.1e'):>12s} "
          f"{fmt(torch_json.get('max_rel_err_fp16'), '.1e'):>12s} "
          f"{fmt(torch_json.get('max_rel_err_bf16'), '.1e'):>12s}")
    print(f"{'16-bit vs fp32 inputs (contract 2e-2)':44s} "
          f"{fmt(g('contract_16bit_vs_fp32_inputs_max_rel_err'), '.1e'):>12s}")
    print(f"correctness: C++ check {'PASS' if check.get('ok') else 'FAIL'}, "
          f"torch {'PASS' if torch_json.get('ok') else 'FAIL'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        sys.exit(summary(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
