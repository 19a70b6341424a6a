#!/bin/bash
# A full MariaDB pair with the envelope decoded from the slice: run a, then b, one after the other,
# with /proc CPU per process sampled each second. Run from the repository's root.
set -e
out=bench/perf-2026-12-03b
go build -o /tmp/fb/finalbench ./cmd/finalbench
for r in a b; do
  python3 bench/perf-2026-12-02f/cpumon.py 1 > $out/cpu-mariadb-$r.txt &
  mon=$!
  /tmp/fb/finalbench -db mysql -phases commit,latency,drain,consume,tx10,sweep,peers -out $out/mariadb-$r > $out/mariadb-$r.log 2>&1
  kill $mon
done
