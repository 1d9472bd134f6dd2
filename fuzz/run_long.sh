#!/usr/bin/env bash
# Runs fuzz targets one after the other for SECONDS each (default 600) and
# prints one line per target: executions, crashes and seconds run.
# Usage: fuzz/run_long.sh BUILD_DIR [SECONDS] [TARGET...]
# Targets default to all six. Crashing inputs land in
# BUILD_DIR/fuzz/long/<target>/artifacts.
set -uo pipefail
build=${1:?usage: run_long.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-600}
shift $(($# < 2 ? $# : 2))
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(npy manifest ids summaries user_record request)
fi
here=$(cd "$(dirname "$0")" && pwd)
for t in "${targets[@]}"; do
  work=$build/fuzz/long/$t
  rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here/corpus/$t/"* "$work/corpus/"
  start=$(date +%s)
  # -fork=1 keeps fuzzing after a crash so the count covers the whole run.
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -fork=1 \
    -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
  end=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log" |
          awk '{s += $2} END {print s + 0}')
  if ((execs == 0)); then
    execs=$(grep -o '#[0-9]*' "$work/log" | tail -1 | tr -d '#')
  fi
  crashes=$(find "$work/artifacts" -type f | wc -l)
  echo "$t executions=${execs:-0} crashes=$crashes seconds=$((end - start)) corpus=$(ls "$work/corpus" | wc -l)"
done
