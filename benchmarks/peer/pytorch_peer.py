#!/usr/bin/python3
"""The EmbSum score (docs/design.md section 2) in PyTorch: the peer a team
would serve with TorchServe or Triton's PyTorch backend.

Same work and conditions as embsum-bench-scoring's defaults: an item arena
larger than the last-level cache (B and G, [N, n, d], fp32 or bf16), a
random candidate set per call gathered from it, a different user (A and Q,
[m, d]) per call, then

    K = A B^T, L = Q G^T              (two einsums, per candidate: m x n)
    w = softmax over all m*n entries of L   (fp32)
    score = sum_ij w_ij K_ij, top_user_code = argmax_i sum_j w_ij K_ij

Prints one JSON object (seconds_p50, p10, p90 ...). A benchmark, not a
test: needs Debian's python3-torch (tools/setup.sh); CI does not run it.

    /usr/bin/python3 benchmarks/peer/pytorch_peer.py --dtype=fp32 --threads=1
"""
import argparse
import json
import os
import statistics
import sys
import time


def llc_bytes():
    best = 0
    for index in range(8):
        path = f"/sys/devices/system/cpu/cpu0/cache/index{index}/size"
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:].upper(), 1)
        digits = text.rstrip("KkMm")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or 32 << 20


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--user_codes", type=int, default=32)
    p.add_argument("--item_codes", type=int, default=8)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--candidates", type=int, default=500)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arena_rows", type=int, default=0,
                   help="0: enough rows for 4x the last-level cache")
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:  # the peer is optional
        print(f"pytorch_peer: PyTorch is not installed ({e}); "
              "install Debian's python3-torch (tools/setup.sh)", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    m, n, d, c = args.user_codes, args.item_codes, args.dim, args.candidates
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    elem = 4 if args.dtype == "fp32" else 2
    row_bytes = 2 * n * d * elem  # B and G
    rows = args.arena_rows or max(c, (4 * llc_bytes() + row_bytes - 1) // row_bytes)
    if rows < c:
        print("pytorch_peer: --arena_rows must be at least --candidates",
              file=sys.stderr)
        return 2
    scale = d ** -0.5
    # Filled in chunks so the fp32 temporaries stay small.
    b = torch.empty(rows, n, d, dtype=dtype)
    g = torch.empty(rows, n, d, dtype=dtype)
    chunk = 4096
    for start in range(0, rows, chunk):
        end = min(rows, start + chunk)
        b[start:end] = (torch.randn(end - start, n, d) * scale).to(dtype)
        g[start:end] = (torch.randn(end - start, n, d) * scale).to(dtype)
    users = [((torch.randn(m, d) * scale).to(dtype),
              (torch.randn(m, d) * scale).to(dtype)) for _ in range(args.users)]
    row_sets = [torch.randperm(rows)[:c] for _ in range(16)]

    def score(a, q, idx):
        bc = b.index_select(0, idx)  # [c, n, d]: the gather from the arena
        gc = g.index_select(0, idx)
        k = torch.einsum("md,cnd->cmn", a, bc).float()
        l = torch.einsum("md,cnd->cmn", q, gc).float()
        w = torch.softmax(l.reshape(c, m * n), dim=1).reshape(c, m, n)
        per_code = (w * k).sum(dim=2)  # [c, m]
        return per_code.sum(dim=1), per_code.argmax(dim=1)

    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.reps):
            a, q = users[i % len(users)]
            idx = row_sets[i % len(row_sets)]
            start = time.perf_counter()
            scores, codes = score(a, q, idx)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times.append(elapsed)
        # The result is the function of docs/design.md: check one candidate
        # against a float64 evaluation of the same stored values.
        a, q = users[0]
        idx = row_sets[0]
        scores, codes = score(a, q, idx)
        a64, q64 = a.double(), q.double()
        b64, g64 = b[idx[0]].double(), g[idx[0]].double()
        k64 = a64 @ b64.T
        w64 = torch.softmax((q64 @ g64.T).reshape(-1), 0).reshape(m, n)
        ref = float((w64 * k64).sum())
        rel = abs(float(scores[0]) - ref) / max(abs(ref), 1e-30)

    times.sort()
    flops = 4.0 * m * n * d * c
    out = {
        "peer": "pytorch",
        "torch_version": torch.__version__,
        "dtype": args.dtype,
        "threads": args.threads,
        "user_codes": m, "item_codes": n, "dim": d, "candidates": c,
        "arena_rows": rows, "arena_bytes": rows * row_bytes,
        "reps": args.reps,
        "seconds_p50": statistics.median(times),
        "seconds_p10": times[int(0.1 * len(times))],
        "seconds_p90": times[min(len(times) - 1, int(0.9 * len(times)))],
        "seconds_min": times[0],
        "gflops": flops / statistics.median(times) / 1e9,
        "parity_rel_error_first_candidate": rel,
        "cpu_capability": torch.backends.cpu.get_cpu_capability()
        if hasattr(torch.backends, "cpu") else None,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
