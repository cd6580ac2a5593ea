#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs the wire decoder fuzzer.
#   scripts/fuzz/run.sh [SECONDS]     (default 60)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
scripts/install-deps.sh
if ! command -v clang >/dev/null; then
    echo "fuzz/run.sh: clang is needed (apt-get install clang)" >&2
    exit 2
fi
CC=clang cmake -S . -B build-fuzz -DKEEL_FUZZ=ON -DKEEL_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz --target fuzz_wire -j"$(nproc)"
mkdir -p build-fuzz/corpus-wire
build-fuzz/bin/fuzz_wire -max_total_time="${1:-60}" -max_len=65536 build-fuzz/corpus-wire
