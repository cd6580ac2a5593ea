#!/usr/bin/env bash
# The install, as a user meets it (dist/CMakeLists.txt, docs/operations.md
# "Installing"):
#  1. `cmake --install BUILD --prefix /usr` into a DESTDIR puts every file
#     where it belongs, and the runtime and dev components together install
#     exactly what the plain install does;
#  2. the installed example driver (share/doc/keel/examples/double.c) builds
#     with `pkg-config --cflags --libs keeldriver` alone against the DESTDIR,
#     once with libkeeldriver.so and once with libkeeldriver.a
#     (`pkg-config --static`), and both load and run: with no broker they
#     give up after DSBrokerTimeout with exit 3, and against the installed
#     keel-broker and keel-engine, started from the installed example
#     properties files, the shared one gets its 10 results; the same build
#     works from an install with --prefix /opt/keel, whose keeldriver.pc
#     and units name /opt/keel;
#  3. `systemd-analyze verify` says nothing about the installed units.
# Exits non-zero, naming the step, on the first failure.
#   usage: tests/install/test_install.sh BUILD_DIR [CMAKE]
# CC (default cc) and CFLAGS (the sanitizer flags of a sanitizer build)
# come from the environment.
set -euo pipefail
build=$(cd "$1" && pwd)
cmake=${2:-cmake}
cc=${CC:-cc}
read -r -a cflags <<< "${CFLAGS:-}"

tmp=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "test_install: FAIL: $*" >&2
    exit 1
}
step() { echo "test_install: $*"; }

root=$tmp/root
step "cmake --install $build --prefix /usr (DESTDIR=$root)"
DESTDIR=$root "$cmake" --install "$build" --prefix /usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
if grep -qi 'warning' "$tmp/install.log"; then
    cat "$tmp/install.log" >&2
    fail "cmake --install printed a warning"
fi

# -- 1. the files ----------------------------------------------------------
pc=$(find "$root" -name keeldriver.pc)
[ "$(printf '%s\n' "$pc" | grep -c .)" = 1 ] || fail "expected one keeldriver.pc, found: $pc"
pcdir=$(dirname "$pc")
libdir=${pcdir%/pkgconfig}
usr=$root/usr
for f in bin/keel-broker bin/keel-engine bin/keel-driver bin/keel-admin \
    include/keel/driver.h include/keel/error.h include/keel/settings.h include/keel/service.h \
    share/man/man1/keel-broker.1 share/man/man1/keel-engine.1 \
    share/man/man1/keel-driver.1 share/man/man1/keel-admin.1 \
    share/doc/keel/examples/broker.properties share/doc/keel/examples/engine.properties \
    share/doc/keel/examples/double.c \
    lib/systemd/system/keel-broker.service lib/systemd/system/keel-engine@.service \
    lib/sysusers.d/keel.conf; do
    [ -f "$usr/$f" ] || fail "not installed: /usr/$f"
done
for f in libkeeldriver.so libkeeldriver.so.0 libkeeldriver.a; do
    [ -e "$libdir/$f" ] || fail "not installed: ${libdir#"$root"}/$f"
done
for p in keel-broker keel-engine keel-driver keel-admin; do
    [ -x "$usr/bin/$p" ] || fail "/usr/bin/$p is not executable"
done
grep -qx 'prefix=/usr' "$pc" || fail "keeldriver.pc: prefix is not /usr: $(grep '^prefix=' "$pc")"
grep -q '^ExecStart=/usr/bin/keel-broker ' "$usr/lib/systemd/system/keel-broker.service" ||
    fail "keel-broker.service does not start /usr/bin/keel-broker"
grep -rq '@[a-zA-Z_]*@' "$pc" "$usr/lib/systemd/system" && fail "an @variable@ left unreplaced"
for p in keel-broker keel-engine keel-driver keel-admin; do
    grep -q '^\.SH SYNOPSIS' "$usr/share/man/man1/$p.1" || fail "$p.1 has no SYNOPSIS"
done
grep -q '^\.B EngineTimeoutMinutes$' "$usr/share/man/man1/keel-broker.1" ||
    fail "keel-broker.1 does not list the setting EngineTimeoutMinutes"
if command -v groff >/dev/null; then
    for p in keel-broker keel-engine keel-driver keel-admin; do
        out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$usr/share/man/man1/$p.1" 2>&1)
        [ -z "$out" ] || fail "groff warns about $p.1: $out"
    done
fi

step "the components runtime + dev install what the plain install does"
for c in runtime dev; do
    DESTDIR=$tmp/split "$cmake" --install "$build" --prefix /usr --component "$c" >/dev/null
done
diff <(cd "$root" && find . | sort) <(cd "$tmp/split" && find . | sort) ||
    fail "runtime + dev differ from the plain install (a file in no component?)"

# -- 2. a driver built with pkg-config alone ---------------------------------
# build_example ROOT PREFIX PCDIR LIBDIR: builds the example driver installed
# in ROOT under PREFIX as $tmp/double (libkeeldriver.so) and
# $tmp/double-static (libkeeldriver.a) with pkg-config's flags alone, and
# runs both with no broker to reach.
build_example() {
    local root=$1 pcdir=$3 libdir=$4 rc flags
    local src=$root$2/share/doc/keel/examples/double.c
    read -r -a flags <<< "$(PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_PATH=$pcdir \
        pkg-config --cflags --libs keeldriver)"
    step "cc double.c \$(pkg-config --cflags --libs keeldriver): ${flags[*]}"
    "$cc" -std=c11 -Wall -Wextra -Werror "${cflags[@]}" "$src" "${flags[@]}" -o "$tmp/double" ||
        fail "the example driver does not build against the installed libkeeldriver.so"
    # The static archive: the flags of `pkg-config --static`, with the
    # archive named instead of -lkeeldriver (which would pick the .so beside it).
    read -r -a flags <<< "$(PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_PATH=$pcdir \
        pkg-config --cflags --static --libs keeldriver)"
    flags=("${flags[@]/#-lkeeldriver/-l:libkeeldriver.a}")
    step "cc double.c \$(pkg-config --cflags --static --libs keeldriver): ${flags[*]}"
    "$cc" -std=c11 -Wall -Wextra -Werror "${cflags[@]}" "$src" "${flags[@]}" -o "$tmp/double-static" ||
        fail "the example driver does not build against the installed libkeeldriver.a"
    if readelf -d "$tmp/double-static" | grep -q 'libkeeldriver'; then
        fail "double-static needs libkeeldriver.so"
    fi
    readelf -d "$tmp/double" | grep -q 'NEEDED.*libkeeldriver\.so\.0' ||
        fail "double does not need libkeeldriver.so.0"

    step "both load and run: no broker -> exit 3 after DSBrokerTimeout"
    local nobroker=(DSPrimaryBroker=tcp://127.0.0.1:9 DSBrokerTimeout=1)
    rc=0
    LD_LIBRARY_PATH=$libdir timeout 30 "$tmp/double" "${nobroker[@]}" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc = 3 ] || { cat "$tmp/err" >&2; fail "double (shared) exited $rc, expected 3"; }
    grep -q 'no broker reachable' "$tmp/err" || fail "double (shared) did not say 'no broker reachable'"
    rc=0
    timeout 30 "$tmp/double-static" "${nobroker[@]}" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc = 3 ] || { cat "$tmp/err" >&2; fail "double (static) exited $rc, expected 3"; }
}
build_example "$root" /usr "$pcdir" "$libdir"

step "double against the installed keel-broker and keel-engine (example properties)"
read -r port admin_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
examples=$usr/share/doc/keel/examples
"$usr/bin/keel-broker" -c "$examples/broker.properties" --set Store=memory: \
    --set "Endpoint=tcp://127.0.0.1:$port" --set "AdminEndpoint=tcp://127.0.0.1:$admin_port" \
    --log-level warn 2>"$tmp/broker.log" &
pids+=($!)
"$usr/bin/keel-engine" -c "$examples/engine.properties" --set "Brokers=tcp://127.0.0.1:$port" \
    --set "StateDir=$tmp/engine" --set Slots=1 --log-level warn 2>"$tmp/engine.log" &
pids+=($!)
rc=0
LD_LIBRARY_PATH=$libdir timeout 60 "$tmp/double" "DSPrimaryBroker=tcp://127.0.0.1:$port" \
    DSBrokerTimeout=30 >"$tmp/out" 2>"$tmp/err" || rc=$?
if [ $rc != 0 ]; then
    cat "$tmp/err" "$tmp/broker.log" "$tmp/engine.log" >&2
    fail "double against the installed grid exited $rc"
fi
expected=$(for i in $(seq 0 9); do echo "task $i: $((2 * i))"; done)
[ "$(sort -V "$tmp/out")" = "$expected" ] ||
    fail "double printed $(cat "$tmp/out"), expected task i: 2i for i in 0..9"

# Again under a prefix that is no system directory: under /usr the DESTDIR's
# /usr/include also comes in through msgpack's -I/usr/include (the sysroot
# applies to every package), which would hide a wrong includedir.
opt=$tmp/opt
step "cmake --install $build --prefix /opt/keel (DESTDIR=$opt)"
DESTDIR=$opt "$cmake" --install "$build" --prefix /opt/keel >/dev/null
opt_pc=$(find "$opt" -name keeldriver.pc)
[ -f "$opt_pc" ] || fail "no keeldriver.pc under --prefix /opt/keel"
grep -qx 'prefix=/opt/keel' "$opt_pc" || fail "keeldriver.pc: prefix is not /opt/keel"
grep -q '^ExecStart=/opt/keel/bin/keel-broker -c /opt/keel/etc/keel/broker.properties$' \
    "$opt/opt/keel/lib/systemd/system/keel-broker.service" ||
    fail "keel-broker.service under /opt/keel does not start /opt/keel/bin/keel-broker"
opt_pcdir=$(dirname "$opt_pc")
build_example "$opt" /opt/keel "$opt_pcdir" "${opt_pcdir%/pkgconfig}"

# -- 3. the units -------------------------------------------------------------
# systemd-analyze verify checks that ExecStart= exists, so it reads copies
# of the units that start the DESTDIR's programs; MANPATH lets it find the
# installed man pages that Documentation= names. It exits 0 even for an
# unknown key or a bad value, so any output is a failure.
if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze not found (Debian package systemd; scripts/install-deps.sh installs it)"
fi
units=$tmp/units
mkdir -p "$units"
for f in "$usr"/lib/systemd/system/*; do
    sed "s|^ExecStart=/usr/bin/|ExecStart=$usr/bin/|" "$f" >"$units/$(basename "$f")"
done
man_check=(--man=no)
command -v man >/dev/null && man_check=(--man=yes)
step "systemd-analyze verify ${man_check[*]} keel-broker.service keel-engine@a.service"
out=$(MANPATH=$usr/share/man systemd-analyze verify "${man_check[@]}" \
    "$units/keel-broker.service" "$units/keel-engine@a.service" 2>&1) ||
    fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
step "ok"
