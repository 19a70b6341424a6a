#!/bin/bash
# The limit (raw DB + broker) and the library paced at the same rates, with
# per-process CPU from /proc (cpumon.py, 1 s) and each line of finalbench's
# output timestamped, so that avg.py can average each phase's CPU:
#   bash bench/perf-2026-12-03/paced.sh OUTDIR [rates...]
cd "$(dirname "$0")/../.." || exit 1
out=$1; shift; mkdir -p "$out"
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1500 2000 2500)
for rate in "${rates[@]}"; do
  for i in 1 2; do
    python3 bench/perf-2026-12-02f/cpumon.py 1 > "$out/cpu-$rate-$i.txt" &
    mon=$!
    go run ./cmd/finalbench -db "${DB:-mysql}" -phases latency -rate "$rate" -d 15s -raw-sweep=false -raw 256,256,1 -out "$out/r-$rate-$i" 2>&1 |
      while IFS= read -r l; do echo "$(date +%H:%M:%S) $l"; done > "$out/r-$rate-$i.log"
    kill $mon
    t=($(grep -E "paced at|commit to (delivery|handled)" "$out/r-$rate-$i.log" | awk '{print $1}'))
    got=$(grep "paced commit rate" "$out/r-$rate-$i.log" | awk -F'|' '{print $3+0}')
    lim=$(grep -o "commit to delivery .*, [0-9]* tx/s" "$out/r-$rate-$i.log" | awk '{print $(NF-1)}')
    echo "$rate-$i limit:   $(python3 bench/perf-2026-12-03/avg.py "$out/cpu-$rate-$i.txt" "${t[0]}" "${t[1]}" "$lim") (reached $lim tx/s)"
    echo "$rate-$i library: $(python3 bench/perf-2026-12-03/avg.py "$out/cpu-$rate-$i.txt" "${t[2]}" "${t[3]}" "$got") (reached $got tx/s)"
  done
done
