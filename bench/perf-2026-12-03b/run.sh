#!/bin/bash
# One finalbench run with per-process CPU from /proc (cpumon.py, 1 s) beside it:
#   bash bench/perf-2026-12-03b/run.sh OUT [finalbench flags...]
# writes OUT.log, OUT/ (results.json, throughput.svg) and cpu-$(basename OUT).txt next to OUT.
# FINALBENCH=/some/dir/finalbench runs that binary instead of building the tree's.
# The ninth session's runs, one after the other, nothing else running:
#   for r in a b; do bash bench/perf-2026-12-03b/run.sh bench/perf-2026-12-03b/mariadb-$r -db mysql -phases commit,latency,drain,consume,tx10,sweep,peers; done
#   for r in a b; do for db in mysql postgres; do
#     bash bench/perf-2026-12-03b/run.sh bench/perf-2026-12-03b/drain-64k/$db-$r -db $db -size 65536 -backlog 10000 -phases drain; done; done
#   bash bench/perf-2026-12-03b/run.sh bench/perf-2026-12-03b/mariadb-c -db mysql -phases commit,latency,drain,consume,tx10,sweep,peers
#   bash bench/perf-2026-12-03b/run.sh bench/perf-2026-12-03b/postgres-c -db postgres -phases commit,latency,drain,consume,tx10,sweep,peers
set -e
cd "$(dirname "$0")/../.."
out=$1; shift
mkdir -p "$(dirname "$out")"
bin=$(mktemp -d)
fb=${FINALBENCH:-$bin/finalbench} # FINALBENCH: a binary built elsewhere, named finalbench too
if [ -z "$FINALBENCH" ]; then
  go build -o "$bin/finalbench" ./cmd/finalbench # named finalbench: cpumon.py counts the process by its name
fi
python3 bench/perf-2026-12-02f/cpumon.py 1 > "$(dirname "$out")/cpu-$(basename "$out").txt" &
mon=$!
trap 'kill $mon; rm -rf "$bin"' EXIT
"$fb" -out "$out" "$@" > "$out.log" 2>&1
