#!/usr/bin/env bash
# Keel in one minute: one broker, two engines and a batch of 100 `double`
# tasks on loopback. Everything it starts is stopped (by PID) when it ends,
# and its temp dir removed; the daemons' logs are shown if something fails.
# KEEL_BUILD_DIR (default build) names the build directory under the repo.
#   usage: scripts/demo.sh [--cluster] [--help]
#   --cluster: a private PostgreSQL, two brokers on it (both serve, each
#   its own work), engines and a driver that know only the first; the
#   first is killed -9 mid-run and the second takes its work over and
#   finishes the batch.
set -euo pipefail

cluster=0
case "${1:-}" in
    "") ;;
    --cluster) cluster=1 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
    if [[ -n "${pg_pid:-}" ]]; then
        kill -INT "$pg_pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pg_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pg_pid" 2>/dev/null || true
        wait "$pg_pid" 2>/dev/null || true
    fi
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

# Waits (bounded) until `keel-admin -e $1 --json status` has $2 (a sed
# pattern) ; prints the status.
wait_status() {
    local admin=$1 pattern=$2 limit=$3 status="" i
    for ((i = 0; i < limit * 5; i++)); do
        status=$("$bin/keel-admin" -e "$admin" --json --timeout 1s status 2>/dev/null || true)
        if grep -q "$pattern" <<<"$status"; then
            return 0
        fi
        sleep 0.2
    done
    echo "demo: '$pattern' not in the status of $admin within $limit s: ${status:-no answer}" >&2
    return 1
}

if ((cluster)); then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ ! -x "$pg_bin/initdb" ]]; then
        echo "demo: no PostgreSQL in /usr/lib/postgresql (scripts/install-deps.sh installs it)" >&2
        exit 1
    fi
    as=()
    if ((EUID == 0)); then
        chown postgres: "$tmp"
        as=(setpriv --reuid=postgres --regid=postgres --init-groups) # exec: its PID is postgres'
    fi
    echo "==> a private PostgreSQL in $tmp"
    "${as[@]}" "$pg_bin/initdb" -D "$tmp/pg" -U postgres -A trust --no-sync >"$tmp/initdb.log" 2>&1
    pg_port=$(free_port)
    "${as[@]}" "$pg_bin/postgres" -D "$tmp/pg" -k "$tmp" -p "$pg_port" \
        -c listen_addresses=127.0.0.1 >"$tmp/postgres.log" 2>&1 &
    pg_pid=$!
    for ((i = 0; i < 300; i++)); do
        "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
        kill -0 "$pg_pid" 2>/dev/null || break
        sleep 0.1
    done
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || { echo "demo: PostgreSQL did not start" >&2; exit 1; }
    store="postgresql://postgres@127.0.0.1:$pg_port/postgres"
    names=(A B)
    for n in 0 1; do
        port=$(free_port)
        aport=$(free_port)
        ep[$n]="tcp://127.0.0.1:$port"
        adm[$n]="tcp://127.0.0.1:$aport"
        echo "==> keel-broker ${names[$n]} on ${ep[$n]} (Store=$store)"
        "$bin/keel-broker" --set "Name=${names[$n]}" --set "Endpoint=${ep[$n]}" \
            --set "AdminEndpoint=${adm[$n]}" --set "Store=$store" --set "MemberLease=2s" \
            --set "HeartbeatInterval=250ms" >"$tmp/broker${names[$n]}.log" 2>&1 &
        bpid[$n]=$!
        pids+=("${bpid[$n]}")
        wait_status "${adm[$n]}" '"state":"serving"' 15
    done
    wait_status "${adm[0]}" "${ep[1]}" 15 # A lists B as a member
    for n in 1 2; do
        mkdir -p "$tmp/engine$n"
        echo "==> keel-engine $n (1 slot), configured with broker A only"
        "$bin/keel-engine" --set "StateDir=$tmp/engine$n" --set "Brokers=${ep[0]}" \
            --set "Slots=1" >"$tmp/engine$n.log" 2>&1 &
        pids+=($!)
    done
    wait_status "${adm[0]}" '"online":2' 30
    echo "==> keel-driver --broker A submit --service sleep --input 20 --count 300 (in the background)"
    "$bin/keel-driver" --broker "${ep[0]}" --set DSBrokerTimeout=120s submit --service sleep \
        --input 20 --count 300 >"$tmp/results.jsonl" 2>"$tmp/driver.log" &
    driver_pid=$!
    pids+=("$driver_pid")
    for ((i = 0; i < 300; i++)); do
        [[ -s "$tmp/results.jsonl" && $(wc -l <"$tmp/results.jsonl") -ge 30 ]] && break
        sleep 0.1
    done
    echo "==> $(wc -l <"$tmp/results.jsonl") results in; kill -9 broker A"
    kill -KILL "${bpid[0]}"
    wait "${bpid[0]}" 2>/dev/null || true
    t0=$SECONDS
    wait_status "${adm[1]}" '"takeovers":1' 15
    echo "==> broker B took A's work over (within $((SECONDS - t0 + 1)) s); the driver and engines moved to it"
    if ! wait "$driver_pid"; then
        echo "demo: keel-driver failed" >&2
        cat "$tmp/driver.log" >&2
        exit 1
    fi
    lines=$(wc -l <"$tmp/results.jsonl")
    unique=$(sed -n 's/.*"task":\([0-9]*\).*/\1/p' "$tmp/results.jsonl" | sort -u | wc -l)
    echo "driver: $lines results, $unique distinct tasks (300 expected, each once)"
    grep -E "failover|member" "$tmp/driver.log" | head -n 3 || true
    echo "==> keel-admin status of B"
    "$bin/keel-admin" -e "${adm[1]}" status | sed -n '/# Broker/,/# Engines/p'
    if [[ "$lines" -ne 300 || "$unique" -ne 300 ]]; then
        echo "demo: expected 300 results, each once" >&2
        exit 1
    fi
    ok=1
    echo "==> done: a broker killed mid-run, its successor finished the batch; stopping everything"
    exit 0
fi

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
