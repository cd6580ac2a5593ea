#!/usr/bin/env bash
# Installs dependencies, builds Keel and runs every unit and integration test.
#   scripts/test.sh          build in build/ (RelWithDebInfo); also runs each
#                            fuzz target briefly (scripts/fuzz/run.sh, in build-fuzz/)
#   scripts/test.sh --asan   build in build-asan/ with AddressSanitizer + UBSan
# KEEL_BUILD_DIR overrides the build directory (relative to the repo);
# KEEL_FUZZ_SECONDS the time per fuzz target (default 5; 0 skips them).
# Exits non-zero when the build or any test fails. A failed fuzz step's
# report (with the failing input in base64) is printed again at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build_dir=${KEEL_BUILD_DIR:-build}
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
for arg in "$@"; do
    case "$arg" in
        --asan)
            asan=true
            build_dir=${KEEL_BUILD_DIR:-build-asan}
            cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DKEEL_ASAN=ON)
            ;;
        -h|--help)
            sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "test.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

scripts/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S "$root" -B "$root/$build_dir" "${cmake_args[@]}" >/dev/null
cmake --build "$root/$build_dir" -j"$jobs"

if [[ "${asan:-false}" == true ]]; then
    # Any sanitizer finding (leaks included) makes the program fail loudly.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    # Criterion's own one-off allocation is not ours to fix.
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

# Each fuzz target for a few seconds on its seed corpus: a decoder that now
# crashes on a seed or a near one fails CI (docs/security.md, "Fuzzing").
# Its report is printed again after the tests when it failed: a CI log
# shows the end of the output, where the tests' lines would hide it.
fuzz_status=0
fuzz_seconds=${KEEL_FUZZ_SECONDS:-5}
fuzz_log="$root/$build_dir/fuzz-step.log"
if [[ "${asan:-false}" != true && "$fuzz_seconds" != 0 ]]; then
    scripts/fuzz/run.sh "$fuzz_seconds" >"$fuzz_log" 2>&1 || fuzz_status=$?
    cat "$fuzz_log"
fi

cd "$root/$build_dir"
ctest_status=0
ctest --output-on-failure -j2 || ctest_status=$?
if ((fuzz_status != 0)); then
    echo "test.sh: the fuzz step failed (exit $fuzz_status) before the tests ran:" >&2
    cat "$fuzz_log" >&2
fi
((ctest_status == 0)) || exit "$ctest_status"
exit "$fuzz_status"
