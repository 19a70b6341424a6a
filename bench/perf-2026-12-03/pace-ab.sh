#!/bin/bash
# The commit phase with the library's producers unpaced, then paced at the
# rate the limit reached in the same round (-pace-library 1.0), interleaved,
# with RabbitMQ's queue depths sampled every second:
#   bash bench/perf-2026-12-03/pace-ab.sh OUTDIR [DB]
cd "$(dirname "$0")/../.." || exit 1
out=$1; db=${2:-mysql}; mkdir -p "$out"
go build -o "$out/finalbench" ./cmd/finalbench || exit 1
for i in 1 2 3; do
  for p in 0 1.0; do
    ( while :; do echo "$(date +%H:%M:%S) $(rabbitmqctl -q list_queues name messages messages_unacknowledged 2>/dev/null | awk '$2+$3>0 {printf "%s=%d/%d ", $1, $2, $3}')"; sleep 1; done ) > "$out/queues-$p-$i.txt" &
    qmon=$!
    python3 bench/perf-2026-12-02f/cpumon.py 1 > "$out/cpu-$p-$i.txt" &
    mon=$!
    "$out/finalbench" -db "$db" -phases commit -rounds 3 -d 10s -pace-library "$p" -raw-sweep=false -raw 256,256,1 -out "$out/r-$p-$i" 2>&1 |
      while IFS= read -r l; do echo "$(date +%H:%M:%S) $l"; done > "$out/r-$p-$i.log"
    kill $mon $qmon
    echo "pace $p run $i: $(grep -E 'commit rate vs that limit|end-to-end vs that limit' "$out/r-$p-$i.log" | awk -F'|' '{printf "%s %s %s %s; ", $2, $3, $4, $5}')"
  done
done
rm -f "$out/finalbench"
