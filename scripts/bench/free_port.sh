# shellcheck shell=bash
# free_port: prints a loopback port nobody listens on (bounded number of
# tries). Sourced by the bench scripts (run.sh, cpu-ab.sh).
free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "bench: no free loopback port found" >&2
    return 1
}
