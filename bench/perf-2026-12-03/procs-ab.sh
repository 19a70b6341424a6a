#!/bin/bash
# The commit phase with the benchmark process's GOMAXPROCS at its default
# (the 2 cores) and at 4, interleaved: does the library's producers' wait
# for a P (Go's run queue) set its rate at full load?
#   bash bench/perf-2026-12-03/procs-ab.sh OUTDIR [DB]
cd "$(dirname "$0")/../.." || exit 1
out=$1; db=${2:-mysql}; mkdir -p "$out"
go build -o "$out/finalbench" ./cmd/finalbench || exit 1
for i in 1 2 3; do
  for p in 2 4; do
    GOMAXPROCS=$p "$out/finalbench" -db "$db" -phases commit -rounds 3 -d 10s -raw-sweep=false -raw 256,256,1 -out "$out/r-$p-$i" > "$out/r-$p-$i.log" 2>&1
    echo "GOMAXPROCS=$p run $i: $(grep -E 'raw DB \+ broker, no outbox|commit rate vs that limit' "$out/r-$p-$i.log" | awk -F'|' '{printf "%s %s %s %s; ", $2, $3, $4, $5}')"
  done
done
rm -f "$out/finalbench"
