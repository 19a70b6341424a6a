#!/bin/bash
# The sixteenth session's runs, one after the other, nothing else running:
# per database, run a and run b, each the full run (every phase, the peers
# paced too) followed by its 64 KiB drain; vmstat beside them all.
#   bash bench/perf-2026-12-04/runs.sh [DIR]   (DIR defaults to bench/perf-2026-12-04)
# FINALBENCH=/path/to/finalbench runs that binary (named finalbench); DBS (default
# "mysql postgres") and RUNS (default "a b") pick the databases and the runs' names.
set -e
cd "$(dirname "$0")/../.."
dir=${1:-bench/perf-2026-12-04}
mkdir -p "$dir"
vmstat -t 5 >> "$dir/vmstat.txt" &
vm=$!
trap 'kill $vm' EXIT
for db in ${DBS:-mysql postgres}; do
  n=$([ $db = mysql ] && echo mariadb || echo postgres)
  for r in ${RUNS:-a b}; do
    echo "$n-$r start $(date -u +%FT%TZ)" >> "$dir/times.txt"
    bash bench/perf-2026-12-03b/run.sh "$dir/$n-$r" -db $db \
      -phases commit,latency,drain,consume,tx10,sweep,peers -latency-log "$dir/$n-$r-lat"
    echo "$n-$r-64k start $(date -u +%FT%TZ)" >> "$dir/times.txt"
    bash bench/perf-2026-12-03b/run.sh "$dir/$n-$r-64k" -db $db -size 65536 -backlog 10000 -phases drain
  done
done
echo "end $(date -u +%FT%TZ)" >> "$dir/times.txt"
