#!/bin/bash
# 64 KiB drains with the envelope decoded from the slice: MariaDB a, PostgreSQL a, MariaDB b,
# PostgreSQL b, one after the other, /proc CPU per process each second. From the repository's root.
set -e
out=bench/perf-2026-12-03b/drain-64k
mkdir -p $out
for r in a b; do
  for db in mysql postgres; do
    python3 bench/perf-2026-12-02f/cpumon.py 1 > $out/cpu-$db-$r.txt &
    mon=$!
    /tmp/fb/finalbench -db $db -size 65536 -backlog 10000 -phases drain -out $out/$db-$r > $out/$db-$r.log 2>&1
    kill $mon
  done
done
