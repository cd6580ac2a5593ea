#!/usr/bin/env bash
# A seeded chaos campaign against a real Keel grid on 127.0.0.1 (docs/reliability.md).
#   scripts/chaos/run.sh --seed N [--minutes M] [--topology single|failover|pair] [--bin DIR] [--keep]
# Builds nothing: run scripts/test.sh (or cmake --build build) first; --bin
# defaults to build/bin. Exit 0 when the checker finds nothing lost, nothing
# delivered twice, no wrong output and no stale-epoch write; otherwise the
# journals and logs are kept and the replay command is printed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case "${1:-}" in
    -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exec python3 "$here/chaos.py" --help ;;
esac
exec python3 "$here/chaos.py" "$@"
