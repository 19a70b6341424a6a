#!/bin/bash
# PostgreSQL's TOAST compression for 64 KiB messages committed: the server's
# default_toast_compression set to pglz or lz4 between runs (the tables the
# benchmark creates leave their columns at the default, so the limit's and
# the library's follow it), interleaved, pglz first in each pair:
#   FINALBENCH=/tmp/fb/finalbench bash bench/perf-2026-12-04b/lz4/ab.sh DIR LAST [FIRST]   (pairs FIRST..LAST)
# PHASE=drain measures the 64 KiB backlog drain (and the store alone) instead of
# the commit phase (-backlog 10000, as the full runs' 64 KiB drain).
set -e
dir=$1; pairs=${2:-2}; first=${3:-1}
mkdir -p "$dir"
fb=${FINALBENCH:?a finalbench binary built before the lz4 migration}
args="-phases commit" rows="^\| (commit rate vs raw DB alone|raw DB \+ broker, no outbox|commit rate vs that limit)"
if [ "${PHASE:-commit}" = drain ]; then
  args="-backlog 10000 -phases drain" rows="^\| (backlog drain to subscriber|backlog drain vs the store alone)"
fi
for i in $(seq "$first" "$pairs"); do
  for m in pglz lz4; do
    psql -h 127.0.0.1 -U postgres -d test -qAtc "ALTER SYSTEM SET default_toast_compression = '$m'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    echo "$m-$i $(date -u +%T) $(psql -h 127.0.0.1 -U postgres -d test -qAtc 'SHOW default_toast_compression')"
    "$fb" -db postgres -size 65536 $args -rounds 1 -raw-sweep=false -raw 256,256,1 -out "$dir/$m-$i" > "$dir/$m-$i.log" 2>&1
    grep -E "$rows" "$dir/$m-$i.log"
  done
done
psql -h 127.0.0.1 -U postgres -d test -qAtc "ALTER SYSTEM RESET default_toast_compression" -c "SELECT pg_reload_conf()" >/dev/null
