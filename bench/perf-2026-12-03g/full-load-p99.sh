#!/bin/bash
# Each 1 msg/tx commit round's full-load p50, p99 and max (ms), the limit's and the library's,
# from -latency-log's files (gzipped here; the 10 msg/tx rounds' files were not kept: 90 MB):
#   bash bench/perf-2026-12-03g/full-load-p99.sh bench/perf-2026-12-03g/mariadb-a-lat
D=$1
for f in "$D"/rounds-1msg-*-limit.tsv.gz; do
  r=$(basename "$f" | sed 's/rounds-1msg-\([0-9]*\)-limit.tsv.gz/\1/')
  for s in limit library; do
    printf 'round %s %-7s ' "$r" "$s"
    zcat "$D/rounds-1msg-$r-$s.tsv.gz" | awk 'NR>1 {print $3}' | sort -g |
      awk '{a[NR]=$1} END {printf "p50 %.2f  p99 %.2f  max %.1f\n", a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[NR]}'
  done
done
