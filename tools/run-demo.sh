#!/usr/bin/env bash
# Installs the packages, builds, and starts embsum-server on a synthetic demo
# model (the README's run command). Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD_DIR" -j"$(nproc)" --target embsum-server
exec "$BUILD_DIR/tools/server/embsum-server" --demo "$@"
