#!/usr/bin/env bash
# CPU per task of two builds, in alternating runs (docs/benchmarks.md,
# "A note on measuring").
#   scripts/bench/cpu-ab.sh [-n PAIRS] [-t TASKS] [-w w1|w2] BASE_BUILD NEW_BUILD
# Each run starts a fresh grid of the given build (one broker on a SQLite
# store with StoreSync=full, two 1-slot engines) on 127.0.0.1, runs W1
# (keel-driver submit --service double --range 0:TASKS) or W2 (keel-bench
# latency, TASKS round trips), and reads from /proc the CPU each process
# used during the run: per task (W1) or per round trip (W2), the broker's
# loop thread (its main thread) apart. The two builds alternate run by run
# (this machine's speed drifts by tens of percent within minutes: only
# runs made seconds apart compare), and the medians of each column are
# printed per build.
# A build is a build directory of the Release bench build (the one
# scripts/bench/run.sh makes: bin/ and bench/ under it). Copy one away
# (cp -r build-bench /tmp/base) before rebuilding to keep it as the base:
# the bench programs link the Keel libraries statically.
# Environment: KEEL_AB_BROKER_SET="K=V ..." (more broker settings for both
# builds). Not part of the test suite: it prints numbers, nothing more.
set -euo pipefail

pairs=5 tasks="" mode=w1
while getopts "n:t:w:h" opt; do
    case "$opt" in
        n) pairs=$OPTARG ;;
        t) tasks=$OPTARG ;;
        w) mode=$OPTARG ;;
        *) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if (($# != 2)) || [[ "$mode" != w1 && "$mode" != w2 ]]; then
    echo "usage: scripts/bench/cpu-ab.sh [-n PAIRS] [-t TASKS] [-w w1|w2] BASE_BUILD NEW_BUILD" >&2
    exit 2
fi
[[ -n "$tasks" ]] || { [[ "$mode" == w1 ]] && tasks=400000 || tasks=3000; }
builds=("$1" "$2")
names=(base new)
for b in "${builds[@]}"; do
    for p in bin/keel-broker bin/keel-engine bin/keel-driver bin/keel-admin bench/keel-bench; do
        [[ -x "$b/$p" ]] || { echo "cpu-ab: $b/$p: not built" >&2; exit 2; }
    done
done
((pairs >= 1 && pairs <= 100)) || { echo "cpu-ab: -n: 1 to 100 pairs" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-cpu-ab.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        { wait "$p"; } 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/free_port.sh"

# CPU ticks (user + system) of a process, or of one of its threads.
ticks() { awk '{ print $14 + $15 }' "$1/stat"; }

# run BUILD OUT: one grid, one run; appends a line of numbers to OUT.
run() {
    local b=$1 out=$2 dir ep admin bp i t0 t1 n rc
    dir=$(mktemp -d "$tmp/run.XXXXXX")
    ep="tcp://127.0.0.1:$(free_port)"
    admin="tcp://127.0.0.1:$(free_port)"
    local extra=() kv
    for kv in ${KEEL_AB_BROKER_SET:-}; do extra+=(--set "$kv"); done
    "$b/bin/keel-broker" --set Name=ab --set "Endpoint=$ep" --set "AdminEndpoint=$admin" \
        --set "Store=sqlite:$dir/store.db" --set StoreSync=full --set LogLevel=warn "${extra[@]}" \
        >"$dir/broker.log" 2>&1 &
    bp=$!
    pids=("$bp")
    for i in 1 2; do
        mkdir -p "$dir/e$i"
        "$b/bin/keel-engine" --set "StateDir=$dir/e$i" --set "Brokers=$ep" --set Slots=1 \
            --set LogLevel=warn >"$dir/e$i.log" 2>&1 &
        pids+=("$!")
    done
    for ((i = 0; i < 300; i++)); do
        "$b/bin/keel-admin" -e "$admin" --json --timeout 1s status 2>/dev/null |
            grep -q '"online":2' && break
        kill -0 "$bp" 2>/dev/null || { cat "$dir/broker.log" >&2; echo "cpu-ab: the broker exited" >&2; exit 1; }
        sleep 0.1
    done
    ((i < 300)) || { echo "cpu-ab: the engines did not log in within 30 s" >&2; exit 1; }
    local c0=() c1=()
    for p in "${pids[@]}"; do c0+=("$(ticks "/proc/$p")"); done
    local l0
    l0=$(ticks "/proc/$bp/task/$bp")
    : >"$dir/latency.out"
    t0=$(date +%s%N)
    rc=0
    if [[ "$mode" == w1 ]]; then
        /usr/bin/time -f "%U %S" -o "$dir/client.time" timeout 600 "$b/bin/keel-driver" \
            --broker "$ep" submit --service double --range "0:$tasks" >/dev/null 2>"$dir/client.log" || rc=$?
    else
        KEEL_BENCH_DEADLINE_S=600 /usr/bin/time -f "%U %S" -o "$dir/client.time" \
            "$b/bench/keel-bench" latency "$ep" "$tasks" >"$dir/latency.out" 2>"$dir/client.log" || rc=$?
    fi
    t1=$(date +%s%N)
    ((rc == 0)) || { cat "$dir/client.log" >&2; echo "cpu-ab: the client failed ($rc)" >&2; exit 1; }
    for p in "${pids[@]}"; do c1+=("$(ticks "/proc/$p")"); done
    local l1 hz
    l1=$(ticks "/proc/$bp/task/$bp")
    hz=$(getconf CLK_TCK)
    n=$tasks
    # rate, then us of CPU per task: broker, its loop thread, engines, client
    awk -v n="$n" -v ns=$((t1 - t0)) -v hz="$hz" -v b=$((c1[0] - c0[0])) -v l=$((l1 - l0)) \
        -v e=$((c1[1] - c0[1] + c1[2] - c0[2])) -v lat="$(tr '\n' ' ' <"$dir/latency.out" 2>/dev/null)" \
        -v client="$(cat "$dir/client.time")" 'BEGIN {
            split(client, c, " "); us = 1e6 / hz / n
            median = ""; p99 = ""
            if (match(lat, /median_us=[0-9]+/)) median = substr(lat, RSTART + 10, RLENGTH - 10)
            if (match(lat, /p99_us=[0-9]+/)) p99 = substr(lat, RSTART + 7, RLENGTH - 7)
            printf "%.0f %.2f %.2f %.2f %.2f %s %s\n", n / (ns / 1e9), b * us, l * us, e * us,
                (c[1] + c[2]) * 1e6 / n, median, p99 }' >>"$out"
    cleanup_run
}
cleanup_run() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do { wait "$p"; } 2>/dev/null || true; done
    pids=()
}

for ((r = 0; r < pairs; r++)); do
    for i in 0 1; do
        run "${builds[$i]}" "$tmp/${names[$i]}"
    done
    echo "cpu-ab: pair $((r + 1)) of $pairs done" >&2
done

unit="task"
[[ "$mode" == w2 ]] && unit="round trip"
echo "$mode, $tasks, $pairs alternating pairs; medians (CPU in us per $unit):"
for i in 0 1; do
    awk -v name="${names[$i]}" -v mode="$mode" '
        { for (k = 1; k <= NF; k++) col[k, NR] = $k; nf = NF }
        function median(k,   i, j, v, a, n) {
            n = 0
            for (i = 1; i <= NR; i++) if (col[k, i] != "") a[++n] = col[k, i] + 0
            for (i = 2; i <= n; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
            return n ? (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : 0
        }
        END {
            printf "%-4s rate %8.0f/s  broker %6.2f  loop %6.2f  engines %6.2f  client %6.2f",
                name, median(1), median(2), median(3), median(4), median(5)
            if (mode == "w2") printf "  median %4.0f us  p99 %4.0f us", median(6), median(7)
            printf "\n"
        }' "$tmp/${names[$i]}"
done
