#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (in build-fuzz/) and runs each in
# turn, one process at a time, on its corpus; fails on any finding.
#   scripts/fuzz/run.sh [SECONDS] [TARGET...]      (default: 60 s, every target)
#   scripts/fuzz/run.sh --runs=N [TARGET...]       (N executions each instead)
# TARGET: wire, props, invoke, spool, store_rows, store_load, changes, cond (or
# fuzz_wire, ...).
# New inputs go to build-fuzz/corpus/<target>/ (the checked-in seeds in
# tests/fuzz/corpus/<target>/ are read, never written); a crashing input is
# kept as build-fuzz/artifacts/<target>-crash-*. Prints executions per target.
# docs/security.md ("Fuzzing") says what each target covers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
all=(wire props invoke spool store_rows store_load changes cond)

limit=(-max_total_time=60)
if [[ $# -gt 0 && "$1" =~ ^--runs=([0-9]+)$ ]]; then
    limit=(-runs="${BASH_REMATCH[1]}")
    shift
elif [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
    limit=(-max_total_time="$1")
    shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for i in "${!targets[@]}"; do
    targets[i]=${targets[i]#fuzz_}
    if [[ ! " ${all[*]} " =~ " ${targets[i]} " ]]; then
        echo "fuzz/run.sh: unknown target '${targets[i]}' (${all[*]})" >&2
        exit 2
    fi
done

scripts/install-deps.sh
if ! command -v clang >/dev/null; then
    echo "fuzz/run.sh: clang is needed (scripts/install-deps.sh installs it)" >&2
    exit 2
fi
CC=clang cmake -S . -B build-fuzz -DKEEL_FUZZ=ON -DKEEL_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null

# UBSan findings stop the run like ASan's (the build also says so).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p build-fuzz/artifacts
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "build-fuzz/corpus/$t"
    log="build-fuzz/fuzz_$t.log"
    echo "fuzz/run.sh: fuzz_$t (${limit[*]})" >&2
    rc=0
    "build-fuzz/bin/fuzz_$t" "${limit[@]}" -print_final_stats=1 \
        -artifact_prefix="build-fuzz/artifacts/$t-" \
        "build-fuzz/corpus/$t" "tests/fuzz/corpus/fuzz_$t" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    if ((rc != 0)); then
        status=1
        echo "fuzz/run.sh: fuzz_$t FAILED (exit $rc); the end of $log:" >&2
        tail -n 40 "$log" >&2
        # The input itself, so that a finding made only on a CI machine
        # (which keeps no files) can be reproduced: base64 -d > crash,
        # then build-fuzz/bin/fuzz_$t crash.
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [[ -n "$artifact" && -f "$artifact" ]]; then
            echo "fuzz/run.sh: the input ($(stat -c %s "$artifact") bytes, base64, at most 64 KiB):" >&2
            head -c 65536 "$artifact" | base64 -w 100 >&2
        fi
        summary+=("fuzz_$t: FAILED after ${runs:-?} executions")
    else
        summary+=("fuzz_$t: ${runs:-?} executions in ${secs:-?} s, no finding")
    fi
done
printf '%s\n' "${summary[@]}"
exit "$status"
