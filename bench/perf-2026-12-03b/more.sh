#!/bin/bash
# One more full run on each database after the MariaDB pair and the 64 KiB drains: MariaDB c, then
# PostgreSQL c, /proc CPU per process each second. From the repository's root.
set -e
out=bench/perf-2026-12-03b
for r in mariadb-c:mysql postgres-c:postgres; do
  name=${r%%:*}; db=${r##*:}
  python3 bench/perf-2026-12-02f/cpumon.py 1 > $out/cpu-$name.txt &
  mon=$!
  /tmp/fb/finalbench -db $db -phases commit,latency,drain,consume,tx10,sweep,peers -out $out/$name > $out/$name.log 2>&1
  kill $mon
done
