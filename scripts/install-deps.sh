#!/usr/bin/env bash
# Installs the Debian 12 packages Keel needs to build and test.
# Idempotent: does nothing (and prints nothing) when every package is present.
# Runs as root, or through sudo when not root and sudo exists.
set -euo pipefail

packages=(
    build-essential cmake pkg-config
    libzmq3-dev libczmq-dev
    libprotobuf-c-dev protobuf-c-compiler
    libmsgpack-dev libsqlite3-dev
    libcriterion-dev
    procps util-linux strace
    python3 mount faketime
    clang-format
    clang libclang-rt-dev      # scripts/fuzz/run.sh: the fuzz targets (libFuzzer, sanitizers)
    postgresql libpq-dev
    systemd     # systemd-analyze: tests/install verifies the units (nothing starts it)
    libmicrohttpd-dev          # MetricsEndpoint's HTTP server
    python3-prometheus-client  # tests: parse /metrics with Prometheus' own text parser
    python3-pytest             # tests: the Python driver (python/tests)
    chromium                   # tests: the status page in headless Chromium
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: not root and no sudo; install them as root" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
# Packages with a service (postgresql) must not start it: the tests start
# private instances, and a machine without an init system may fail the
# start and with it the install. Debian's policy-rc.d hook says no to
# every start during the install (only when none is in place already).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    own_policy=1
fi
status=0
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
if ((own_policy)); then
    "${as_root[@]}" rm -f "$policy"
fi
exit "$status"
