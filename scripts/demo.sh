#!/usr/bin/env bash
# Keel in one minute: one broker, two engines and a batch of 100 `double`
# tasks on loopback. Everything it starts is stopped (by PID) when it ends,
# and its temp dir removed; the daemons' logs are shown if something fails.
# KEEL_BUILD_DIR (default build) names the build directory under the repo.
#   usage: scripts/demo.sh [--help]
set -euo pipefail

case "${1:-}" in
    "") ;;
    -h|--help) sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

scripts/install-deps.sh
build="$root/${KEEL_BUILD_DIR:-build}"
echo "==> building ($build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" \
    --target keel-broker keel-engine keel-driver keel-admin keel-pi keel_pi >/dev/null
bin="$build/bin"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-demo.XXXXXX")
pids=()
ok=0

show_logs() {
    local log
    for log in "$tmp"/*.log; do
        [[ -s "$log" ]] || continue
        echo "----- $(basename "$log") (last 30 lines) -----" >&2
        tail -n 30 "$log" >&2
    done
}

cleanup() {
    local pid i
    if [[ $ok -ne 1 ]]; then
        show_logs
    fi
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# A loopback port nobody listens on (bounded number of tries), below the
# kernel's ephemeral range so no outgoing connection takes it meanwhile.
free_port() {
    local port i
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "demo: no free port found" >&2
    return 1
}

# The broker binds its two ports; if another process took one since
# free_port looked, start it again on other ports (a few tries).
for ((try = 1; try <= 5; try++)); do
    port=$(free_port)
    admin_port=$(free_port)
    while [[ "$admin_port" == "$port" ]]; do
        admin_port=$(free_port)
    done
    endpoint="tcp://127.0.0.1:$port"
    admin="tcp://127.0.0.1:$admin_port"
    echo "==> starting keel-broker on $endpoint (admin $admin)"
    "$bin/keel-broker" --set "Name=demo" --set "Endpoint=$endpoint" --set "AdminEndpoint=$admin" \
        --set "Store=sqlite:$tmp/demo.db" >"$tmp/broker.log" 2>&1 &
    broker_pid=$!
    # Up or gone: the admin endpoint answers, or the process exited (bind failed).
    for ((i = 0; i < 50; i++)); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            break
        fi
        if "$bin/keel-admin" -e "$admin" --timeout 1s status >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    if kill -0 "$broker_pid" 2>/dev/null; then
        pids+=("$broker_pid")
        break
    fi
    wait "$broker_pid" 2>/dev/null || true
    echo "demo: keel-broker could not start ($(tail -n 1 "$tmp/broker.log")); trying other ports" >&2
done
if [[ ${#pids[@]} -eq 0 ]]; then
    echo "demo: keel-broker did not start" >&2
    exit 1
fi

for n in 1 2; do
    mkdir -p "$tmp/engine$n"
    echo "==> starting keel-engine $n (2 slots)"
    "$bin/keel-engine" --set "StateDir=$tmp/engine$n" --set "Brokers=$endpoint" \
        --set "Slots=2" --set "service.pi.library=$build/lib/libkeel_pi.so" \
        >"$tmp/engine$n.log" 2>&1 &
    pids+=($!)
done

echo "==> waiting for 2 engines online"
online=0
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo: a daemon (pid $pid) exited early" >&2
            exit 1
        fi
    done
    status=$("$bin/keel-admin" -e "$admin" --json --timeout 1s status 2>/dev/null || true)
    online=$(sed -n 's/.*"engines":{[^}]*"online":\([0-9]*\).*/\1/p' <<<"$status")
    if [[ -n "$online" && "$online" -ge 2 ]]; then
        break
    fi
    sleep 0.2
done
if [[ -z "$online" || "$online" -lt 2 ]]; then
    echo "demo: engines not online within 30 s (status: ${status:-no answer})" >&2
    exit 1
fi

echo "==> keel-driver submit --service double --range 0:100"
if ! "$bin/keel-driver" --broker "$endpoint" submit --service double --range 0:100 \
    >"$tmp/results.jsonl" 2>"$tmp/driver.log"; then
    echo "demo: keel-driver failed" >&2
    cat "$tmp/driver.log" >&2
    exit 1
fi
echo "first results (of $(wc -l <"$tmp/results.jsonl")):"
head -n 5 "$tmp/results.jsonl"
echo "driver summary:"
tail -n 1 "$tmp/driver.log"

echo "==> keel-pi: a C driver calling the pi library service with msgpack arguments"
if ! "$bin/keel-pi" --broker "$endpoint" --tasks 8 --samples 2000000 --chunk 250000 \
    2>"$tmp/pi.log"; then
    echo "demo: keel-pi failed" >&2
    cat "$tmp/pi.log" >&2
    exit 1
fi

echo "==> keel-admin status"
"$bin/keel-admin" -e "$admin" status

ok=1
echo "==> done: 100 double tasks and 8 pi tasks over 2 engines; stopping everything"
