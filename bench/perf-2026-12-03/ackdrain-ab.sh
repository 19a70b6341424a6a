#!/bin/bash
# The drain with the consumer's acks as they are (WithAckBatch 16, written
# within 0.5 ms), with WithAckBatch 128, and with 128 and a 2 ms linger (a
# build of finalbench with mq/amqp's ackLinger changed, given as $3),
# interleaved, with RabbitMQ's CPU a message from cpumon.py:
#   bash bench/perf-2026-12-03/ackdrain-ab.sh OUTDIR DB FINALBENCH_L2
cd "$(dirname "$0")/../.." || exit 1
out=$1; db=${2:-postgres}; l2=$3; mkdir -p "$out"
go build -o "$out/finalbench" ./cmd/finalbench || exit 1
for i in 1 2 3; do
  for v in b16 b128 b128-l2; do
    bin="$out/finalbench"; flags=""
    case $v in b128) flags="-ack-batch 128";; b128-l2) bin=$l2; flags="-ack-batch 128";; esac
    python3 bench/perf-2026-12-02f/cpumon.py 1 > "$out/cpu-$v-$i.txt" &
    mon=$!
    $bin -db "$db" -phases drain -rounds 1 -raw-sweep=false -raw 256,256,1 $flags -out "$out/r-$v-$i" 2>&1 |
      while IFS= read -r l; do echo "$(date +%H:%M:%S) $l"; done > "$out/r-$v-$i.log"
    kill $mon
    L="$out/r-$v-$i.log"
    raw=($(grep -A1 -E "round 1 of 1, drain: raw" "$L" | awk '{print $1}'))
    rawrate=$(grep -oE "consumed [0-9]+ msg/s" "$L" | head -1 | awk '{print $2}')
    lib=($(grep -E "drain t=" "$L" | awk '{d=$NF; sub("delivered=","",d); d+=0; if (d>0 && d<'"${BACKLOG:-100000}"') print $1}' | sed -n '1p;$p'))
    librate=$(grep -oE "delivered [0-9]+ msg/s" "$L" | head -1 | awk '{print $2}')
    echo "$v $i: $(grep -E 'backlog drain to subscriber' "$L" | awk -F'|' '{printf "%s %s %s", $3, $4, $5}')"
    echo "   raw   $(python3 bench/perf-2026-12-03/avg.py "$out/cpu-$v-$i.txt" "${raw[0]}" "${raw[1]}" "$rawrate")"
    echo "   drain $(python3 bench/perf-2026-12-03/avg.py "$out/cpu-$v-$i.txt" "${lib[0]}" "${lib[1]}" "$librate")"
  done
done
rm -f "$out/finalbench"
