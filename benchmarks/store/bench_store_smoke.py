#!/usr/bin/env python3
"""Smoke test of embsum-bench-store: a tiny shape end to end, and its stdout's
last line is one JSON object with exactly the documented fields, in order,
with the requested shape. Usage: bench_store_smoke.py BENCH WORK_DIR"""
import json
import math
import subprocess
import sys

FIELDS = [
    "users", "items", "dim", "user_codes", "item_codes", "keys", "arena_dtype",
    "datagen_seconds", "ingest_seconds", "ingest_users_rows_per_second",
    "ingest_items_rows_per_second", "item_arena_load_seconds",
    "open_with_ann_seconds", "get_us_p50", "get_us_p99", "multiget_batch",
    "multiget_us_p50", "multiget_us_p99", "multiget_us_per_user_p50",
]


def main():
    bench, work = sys.argv[1], sys.argv[2]
    args = [bench, f"--work_dir={work}", "--users=20", "--items=50", "--dim=8",
            "--user_codes=2", "--item_codes=2", "--lookups=50", "--batch=4",
            "--block_cache_mb=8", "--arena_dtype=fp16"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        sys.exit(f"bench exited {run.returncode}:\n{run.stderr}")
    lines = run.stdout.strip().splitlines()
    if not lines:
        sys.exit("bench printed nothing on stdout")
    out = json.loads(lines[-1])
    if list(out) != FIELDS:
        sys.exit(f"fields differ:\n got {list(out)}\nwant {FIELDS}")
    want = {"users": 20, "items": 50, "dim": 8, "user_codes": 2,
            "item_codes": 2, "keys": True, "arena_dtype": "fp16",
            "multiget_batch": 4}
    for key, value in want.items():
        if out[key] != value:
            sys.exit(f"{key}: got {out[key]!r}, want {value!r}")
    for key in FIELDS:
        if key in want:
            continue
        if not isinstance(out[key], (int, float)) or not math.isfinite(out[key]) \
                or out[key] < 0:
            sys.exit(f"{key}: not a finite non-negative number: {out[key]!r}")
    print("embsum-bench-store smoke: OK")


if __name__ == "__main__":
    main()
