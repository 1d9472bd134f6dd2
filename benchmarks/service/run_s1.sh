#!/usr/bin/env bash
# Measures the service Performance table (docs/design.md section 8) in one go, at
# shape S1 (m=32, n=8, d=512) with 500 candidates per Rank, and checks every
# target against figures of the same run:
#
#   1. embsum-datagen + embsum-ingest: a synthetic S1 model and data dir
#   2. gRPC floor: embsum-echo-server driven by embsum-loadgen
#      --target_kind=echo with Rank-sized payloads (concurrency 1, and
#      closed-loop capacity); then concurrency 1 again with the server
#      sweeping SWEEP_BYTES before each answer (the cold floor)
#   3. the kernel alone: embsum-bench-scoring on the same shapes and arena
#      size, all threads and one thread, on the same (otherwise idle) box
#   4. embsum-server: unloaded Rank latency (concurrency 1; also with one
#      candidate, the fixed per-request cost), closed-loop capacity (best of
#      CONCURRENCIES), open loop at 50% and 80% of it. /metrics is scraped
#      before and after each of these phases, so the server's scoring time,
#      handling time, per-phase Rank breakdown (embsum_rank_phase_seconds)
#      and queue wait are known per phase, not averaged over the whole run;
#      then 80% again with constant (evenly spaced) arrivals
#   5. summary.md (the table, with each target's verdict) and summary.json
#      (figures, per-phase server means, targets) under OUT
#
# Usage: benchmarks/service/run_s1.sh   (after building the tools:
#   cmake --build build --target embsum-server embsum-loadgen
#     embsum-echo-server embsum-datagen embsum-ingest embsum-bench-scoring)
# Environment overrides (defaults in brackets): BUILD_DIR [build], OUT
# [benchmarks/service/results/<UTC time>], USERS [1000], ITEMS [10000],
# DIM [512], USER_CODES [32], ITEM_CODES [8], CANDIDATES [500],
# DURATION [10] and WARMUP [2] seconds per run, CONCURRENCIES [1 2 4 8 16],
# CHANNELS [4], LOADGEN_THREADS [1], SWEEP_BYTES [auto: twice cpu0's L2;
# 0 skips the cold echo floor], USER_DTYPE [] (embsum-ingest
# --user_dtype: fp32, fp16 or bf16; empty = the artifact's), SERVER_FLAGS []
# (extra embsum-server flags, e.g. --item_dtype=bf16; the scoring benchmark
# follows its dtype), and the binaries LOADGEN, ECHO_SERVER, SERVER, DATAGEN,
# INGEST, BENCH_SCORING (BENCH_SCORING= skips step 3 and the targets that
# need the kernel time).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-benchmarks/service/results/$(date -u +%Y%m%dT%H%M%SZ)}
USERS=${USERS:-1000}
ITEMS=${ITEMS:-10000}
DIM=${DIM:-512}
USER_CODES=${USER_CODES:-32}
ITEM_CODES=${ITEM_CODES:-8}
CANDIDATES=${CANDIDATES:-500}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCIES=${CONCURRENCIES:-1 2 4 8 16}
CHANNELS=${CHANNELS:-4}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
USER_DTYPE=${USER_DTYPE:-}
SWEEP_BYTES=${SWEEP_BYTES:-auto}
read -r -a EXTRA_SERVER_FLAGS <<<"${SERVER_FLAGS:-}"
BENCH_DTYPE=fp32
for f in "${EXTRA_SERVER_FLAGS[@]}"; do
  [[ $f == --item_dtype=* ]] && BENCH_DTYPE=${f#--item_dtype=}
done
LOADGEN=${LOADGEN:-$BUILD_DIR/tools/loadgen/embsum-loadgen}
ECHO_SERVER=${ECHO_SERVER:-$BUILD_DIR/tools/echo_server/embsum-echo-server}
SERVER=${SERVER:-$BUILD_DIR/tools/server/embsum-server}
DATAGEN=${DATAGEN:-$BUILD_DIR/tools/datagen/embsum-datagen}
INGEST=${INGEST:-$BUILD_DIR/tools/ingest/embsum-ingest}
BENCH_SCORING=${BENCH_SCORING-$BUILD_DIR/benchmarks/embsum-bench-scoring}
PY=/usr/bin/python3
HERE=benchmarks/service

for bin in "$LOADGEN" "$ECHO_SERVER" "$SERVER" "$DATAGEN" "$INGEST"; do
  [[ -x $bin ]] || { echo "run_s1: $bin is missing; build it first" >&2; exit 2; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/embsum-s1.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
log() { echo "run_s1: $*" >&2; }
# Appends a command line to commands.txt.
note() {
  printf '%q ' "$@" >>"$OUT/commands.txt"
  echo >>"$OUT/commands.txt"
}
# Records a command in commands.txt, then runs it.
record() {
  note "$@"
  "$@"
}

{
  echo "# embsum service benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# host: $(hostname), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/commands.txt"

log "1/5 generating an S1 model (users=$USERS items=$ITEMS d=$DIM m=$USER_CODES n=$ITEM_CODES)"
record "$DATAGEN" --out="$WORK/model" --users="$USERS" --items="$ITEMS" --dim="$DIM" \
  --user_codes="$USER_CODES" --item_codes="$ITEM_CODES" --seed=1 --impressions=100 >/dev/null
INGEST_ARGS=(--model_dir="$WORK/model" --data_dir="$WORK/data")
[[ -n $USER_DTYPE ]] && INGEST_ARGS+=(--user_dtype="$USER_DTYPE")
record "$INGEST" "${INGEST_ARGS[@]}" >/dev/null
$PY -c 'import json, os, sys; json.dump({"cores": os.cpu_count(), "cpu": sys.argv[1]}, open(sys.argv[2], "w"))' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" "$OUT/host.json"

LG=("$LOADGEN" --model_dir="$WORK/model" --candidates="$CANDIDATES" --duration="$DURATION"
    --warmup="$WARMUP" --channels="$CHANNELS" --threads="$LOADGEN_THREADS" --progress=false
    --connect_timeout=120)

log "2/5 gRPC floor: embsum-echo-server"
ECHO_PORT=$(free_port)
note "$ECHO_SERVER" --listen="127.0.0.1:$ECHO_PORT" \&
"$ECHO_SERVER" --listen="127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=($!)
record "${LG[@]}" --target="127.0.0.1:$ECHO_PORT" --target_kind=echo --concurrency=1 \
  --json="$OUT/echo_c1.json" --svg="$OUT/echo_c1.svg" >"$OUT/echo_c1.txt"
CAP_C=${CONCURRENCIES##* }
record "${LG[@]}" --target="127.0.0.1:$ECHO_PORT" --target_kind=echo --concurrency="$CAP_C" \
  --json="$OUT/echo_capacity.json" >"$OUT/echo_capacity.txt"
kill -TERM "${PIDS[-1]}" && wait "${PIDS[-1]}" || true
unset 'PIDS[-1]'
# The same floor with the caches as cold as a Rank leaves them: the echo
# server reads SWEEP_BYTES (default twice cpu0's L2) before each answer and
# prints its mean sweep time at exit; summarize.py subtracts it.
if [[ $SWEEP_BYTES == auto ]]; then
  L2=$(cat /sys/devices/system/cpu/cpu0/cache/index2/size 2>/dev/null || echo 2048K)
  case $L2 in
    *K) SWEEP_BYTES=$(( ${L2%K} * 1024 * 2 )) ;;
    *M) SWEEP_BYTES=$(( ${L2%M} * 1024 * 1024 * 2 )) ;;
    *) SWEEP_BYTES=$(( L2 * 2 )) ;;
  esac
fi
if [[ $SWEEP_BYTES != 0 ]]; then
  ECHO_PORT=$(free_port)
  note "$ECHO_SERVER" --listen="127.0.0.1:$ECHO_PORT" --sweep_bytes="$SWEEP_BYTES" \&
  "$ECHO_SERVER" --listen="127.0.0.1:$ECHO_PORT" --sweep_bytes="$SWEEP_BYTES" >"$OUT/echo_cold.log" 2>&1 &
  PIDS+=($!)
  record "${LG[@]}" --target="127.0.0.1:$ECHO_PORT" --target_kind=echo --concurrency=1 \
    --json="$OUT/echo_cold_c1.json" >"$OUT/echo_cold_c1.txt"
  kill -TERM "${PIDS[-1]}" && wait "${PIDS[-1]}" || true
  unset 'PIDS[-1]'
fi

log "3/5 the kernel alone"
if [[ -n $BENCH_SCORING && -x $BENCH_SCORING ]]; then
  BENCH_ARGS=(--user_codes="$USER_CODES" --item_codes="$ITEM_CODES" --dim="$DIM"
    --candidates="$CANDIDATES" --arena_rows="$ITEMS" --dtype="$BENCH_DTYPE" --backend=cpu --json)
  record "$BENCH_SCORING" "${BENCH_ARGS[@]}" >"$OUT/bench_scoring.json"
  record "$BENCH_SCORING" "${BENCH_ARGS[@]}" --threads=1 >"$OUT/bench_scoring_1t.json"
else
  log "embsum-bench-scoring not found: the kernel-bound targets are n/a"
fi

log "4/5 embsum-server"
PORT=$(free_port)
METRICS_PORT=$(free_port)
SERVER_ARGS=(--data_dir="$WORK/data" --listen="127.0.0.1:$PORT"
  --admin_listen="127.0.0.1:$(free_port)" --metrics_listen="127.0.0.1:$METRICS_PORT"
  "${EXTRA_SERVER_FLAGS[@]}")
note "$SERVER" "${SERVER_ARGS[@]}" \&
"$SERVER" "${SERVER_ARGS[@]}" >"$OUT/server.log" 2>&1 &
PIDS+=($!)
SERVER_PID=${PIDS[-1]}
scrape() {
  $PY -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
    "http://127.0.0.1:$METRICS_PORT/metrics" >"$1" || : >"$1"
}
# One loadgen run between two scrapes: phase NAME, then loadgen flags.
phase() {
  local name=$1
  shift
  scrape "$OUT/metrics_${name}_before.txt"
  record "${LG[@]}" --target="127.0.0.1:$PORT" "$@" --json="$OUT/$name.json" >"$OUT/$name.txt"
  scrape "$OUT/metrics_${name}_after.txt"
}
record "${LG[@]}" --target="127.0.0.1:$PORT" --concurrency=1 --duration=1 --warmup=0 \
  >/dev/null  # connects and warms caches before the first phase
# Unloaded Rank latency; then the fixed per-request cost with one candidate.
phase rank_c1 --concurrency=1 --svg="$OUT/rank_c1.svg"
phase rank_c1_one --concurrency=1 --candidates=1
for c in $CONCURRENCIES; do
  [[ $c == 1 ]] && continue
  phase "rank_closed_c$c" --concurrency="$c"
done
CAPACITY=$($PY "$HERE/summarize.py" capacity "$OUT")
log "closed-loop capacity: $CAPACITY Rank/s"
for pct in 50 80; do
  RATE=$($PY -c "print(round($CAPACITY * $pct / 100, 1))")
  phase "rank_open_$pct" --rate="$RATE" --csv="$OUT/rank_open_$pct.csv" \
    --svg="$OUT/rank_open_$pct.svg"
done
# The same 80% load with evenly spaced arrivals: what the server adds when
# arrivals do not bunch (compare the queueing floor in summary.md).
RATE=$($PY -c "print(round($CAPACITY * 80 / 100, 1))")
phase rank_open_80_constant --rate="$RATE" --arrival=constant
kill -TERM "$SERVER_PID" && wait "$SERVER_PID" || true
unset 'PIDS[-1]'

log "5/5 summary"
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/commands.txt"
$PY "$HERE/summarize.py" table "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
