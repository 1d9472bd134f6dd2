#!/usr/bin/env bash
# The device check of the CUDA scorer, in one command on a bare GPU machine
# (CUDA toolkit, CMake, ninja, python3 with PyTorch and NumPy, and the
# header-only nlohmann/json.hpp: nlohmann-json3-dev, or JSON_INCLUDE_DIR=DIR
# with DIR/nlohmann/json.hpp copied over; nothing else):
#
#   benchmarks/gpu/run_device_check.sh            # logs under $OUT or ./gpu-check
#
# Builds scoring/ standalone with embsum-gpu-check and embsum-bench-scoring,
# then runs: correctness against the C++ float64 reference and a PyTorch
# float64 computation on fresh random inputs; timings (Rank(500) at S1,
# batches of 1..256 users, 1M-item full scans against the copy bandwidth,
# concurrent Score with and without dynamic batching); and
# embsum-bench-scoring --backend=cuda per dtype. Prints a summary table last.
# Environment: OUT (log folder), BUILD_DIR, JSON_INCLUDE_DIR, CUDA_ARCHS (default 90 for
# Hopper; 80 for A100), SCAN_ITEMS (default 1000000), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-check}
BUILD_DIR=${BUILD_DIR:-/tmp/embsum-gpu-build}
DUMP_DIR=${DUMP_DIR:-/tmp/embsum-gpu-dumps}
PYTHON=${PYTHON:-python3}
SCAN_ITEMS=${SCAN_ITEMS:-1000000}
mkdir -p "$OUT" "$DUMP_DIR"
rm -f "$DUMP_DIR"/case_*.bin
status=0
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

{
  stamp "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
    --format=csv 2>&1 || true
  nvcc --version 2>&1 | tail -2 || /usr/local/cuda/bin/nvcc --version | tail -2
  cmake --version | head -1
  stamp "configure + build"
  cmake -S benchmarks/gpu -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" &&
  cmake --build "$BUILD_DIR" -j"$(nproc)"
} >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; stamp "BUILD FAILED"; exit 1; }
tail -3 "$OUT/build.log"
{
  echo "== tensor-core instructions in the fused kernels (SASS)"
  if command -v cuobjdump >/dev/null; then
    cuobjdump --dump-sass "$BUILD_DIR/scoring/cuda/libembsum_scoring_cuda.a" 2>/dev/null |
      awk '/Function :/ {fn=$3} /HMMA/ {n[fn]++} END {for (f in n) print n[f], f}'
  else
    echo "cuobjdump not found"
  fi
} >>"$OUT/build.log" 2>&1
grep -A8 "tensor-core" "$OUT/build.log"

stamp "embsum-gpu-check"
timeout 300 "$BUILD_DIR/embsum-gpu-check" --out="$OUT" --dump_dir="$DUMP_DIR" \
  --scan_items="$SCAN_ITEMS" 2>&1 | tee "$OUT/check.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

stamp "PyTorch float64 comparison"
timeout 120 "$PYTHON" benchmarks/gpu/torch_compare.py compare "$DUMP_DIR" \
  "$OUT/torch.json" 2>&1 | tee "$OUT/torch.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

stamp "embsum-bench-scoring --backend=cuda"
: >"$OUT/bench.txt"
for dtype in fp32 fp16 bf16; do
  timeout 120 "$BUILD_DIR/embsum-bench-scoring" --backend=cuda --dtype="$dtype" \
    --json >>"$OUT/bench.txt" 2>&1 || status=1
done
cat "$OUT/bench.txt"

"$PYTHON" benchmarks/gpu/torch_compare.py summary "$OUT"
stamp "done (status $status)"
exit $status
