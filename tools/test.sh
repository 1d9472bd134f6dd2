#!/usr/bin/env bash
# Builds everything and runs every test through ctest. The README's test
# command and what CI (.ci/run) calls. BUILD_DIR overrides the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j"$(nproc)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 900 "$@"
