#!/usr/bin/env bash
# Writes docs/configuration.md from the settings tables compiled into the
# programs (their hidden --config-markdown option), so the doc cannot drift
# from the code. With --check, compares instead of writing and fails when the
# committed doc is stale (run by the test suite).
#   usage: scripts/gen-config-doc.sh [--check] [BIN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
bin=${1:-build/bin}
out=docs/configuration.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  cat <<'HEAD'
# Configuration

Every Keel program reads a Java-style properties file given with `-c FILE`
(`key=value`, `#`/`!` comments, `\` continuation, `\uXXXX` escapes; the last
value of a repeated key wins). Values can be overridden, in increasing order of
precedence, by environment variables `KEEL_<Key>` (as written or upper-cased;
not for pattern keys) and by `--set KEY=VALUE` on the command line (repeatable).
An unknown key or a bad value stops the program with exit code 2 and a message
naming the file, the line and the key.

**Durations** accept a unit: `500ms`, `30s`, `5m` (or `5min`), `2h`; fractions
are allowed (`0.05`, `1.5s`). A bare number is in the key's unit column.
A key whose **name carries its unit** (`EngineTimeoutMinutes`, `RetentionHours`;
any duration key ending in `Minutes`/`Mins`, `Hours`, `Seconds`/`Secs` or
`Ms`/`Millis`) takes a number in that unit, bare or with that unit written
(`0.5`, `0.5min`); any other unit is refused (`EngineTimeoutMinutes=30s`:
"expected a number of minutes (the name gives the unit; 30s is 0.5)"), so a
value never means one thing to the program and another to the person reading
the key. `keel-admin config get` shows such a value as given, in the unit of
the name. Ranges are inclusive and shown with their unit (`1 KiB` = 1024 bytes,
`1 GiB` = 1073741824 bytes).
**Booleans**: `true/false`, `yes/no`, `on/off`, `1/0`.
Keys marked *runtime* can be changed on a running broker with
`keel-admin config set KEY VALUE`; the change is stored in the broker's store
and survives restarts.

**Security** (`Security`, `CurveKey`, `BrokerKey`, the broker's `Authorized*` and
`PairPeerKey`, the driver's `DSSecurity`, `DSCurveKey`, `DSBrokerKey`): key files
are CZMQ certificates made by `keel-admin keygen NAME` (FILE public, FILE_secret
secret, mode 0600); see docs/security.md. keel-admin has no properties file of its
own: it takes `--set Security=none|curve`, `--set CurveKey=FILE` (its certificate,
in `AuthorizedAdmins`) and `--set BrokerKey=FILE`, or `KEEL_Security`,
`KEEL_CurveKey`, `KEEL_BrokerKey` in its environment. `keel-admin -c
broker.properties` reads the broker's file for what it says about reaching the
broker: `AdminEndpoint`, `Security`, and the broker's `CurveKey` as the
`BrokerKey` (only its public file is read); never the admin's own certificate,
which still comes from `--set CurveKey` or `KEEL_CurveKey`. `--set` and the
environment win over the file.

This file is generated from the programs' settings tables by
`scripts/gen-config-doc.sh`; the test suite fails when it is stale.
HEAD
  for prog in keel-broker keel-engine keel-driver; do
    case $prog in
      keel-broker) title="keel-broker (broker.properties)";;
      keel-engine) title="keel-engine (engine.properties)";;
      keel-driver) title="keel-driver and libkeeldriver (driver.properties)";;
    esac
    printf '\n## %s\n\n' "$title"
    "$bin/$prog" --config-markdown
  done
} > "$tmp"
if [ $check = 1 ]; then
  if ! diff -u "$out" "$tmp"; then
    echo "docs/configuration.md is stale: run scripts/gen-config-doc.sh" >&2
    exit 1
  fi
  echo "docs/configuration.md is up to date"
else
  cp "$tmp" "$out"
  echo "wrote $out"
fi
