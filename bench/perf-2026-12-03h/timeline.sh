#!/bin/bash
# Deliveries per time bucket of one -latency-log file (gzipped), to see whether a round's
# delivery stalls or idles, and its slowest deliveries by when they were committed:
#   bash bench/perf-2026-12-03h/timeline.sh bench/perf-2026-12-03h/mariadb-a-lat/rounds-10msg-2-library.tsv.gz 100
#   bash bench/perf-2026-12-03h/timeline.sh bench/perf-2026-12-03h/postgres-b-lat/paced-library.tsv.gz 50
# prints the deliveries in each bucket of B ms (by delivery time), then, by commit time, the
# buckets whose slowest delivery took over 15 ms: start ms, deliveries committed, max latency.
f=$1 b=${2:-100}
zcat "$f" | awk -v b="$b" 'NR>1 {
    k = int($2 / b); n[k]++; if (k > kmax) kmax = k
    c = int($1 / b); cn[c]++; if ($3 > cm[c]) cm[c] = $3; if (c > cmax) cmax = c
  }
  END {
    printf "deliveries per %d ms:\n", b
    for (k = 0; k <= kmax; k++) printf "%d%s", n[k] + 0, (k % 20 == 19 ? "\n" : " ")
    printf "\nslow buckets by commit time (start ms, committed, max latency ms):\n"
    for (c = 0; c <= cmax; c++) if (cm[c] > 15) printf "%d %d %.1f\n", c * b, cn[c], cm[c]
  }'
