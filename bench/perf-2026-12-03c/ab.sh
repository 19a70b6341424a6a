#!/bin/bash
# Interleaved A/B of two finalbench binaries (each in a directory of its own,
# named finalbench so that cpumon.py counts it), nothing else running:
#   bash bench/perf-2026-12-03c/ab.sh OUTDIR PAIRS OLD_DIR NEW_DIR [finalbench flags...]
# writes OUTDIR/{old,new}-N.log and OUTDIR/cpu-{old,new}-N.txt.
set -e
cd "$(dirname "$0")/../.."
out=$1 pairs=$2 old=$3 new=$4; shift 4
mkdir -p "$out"
mon=
trap '[ -n "$mon" ] && kill $mon 2>/dev/null; true' EXIT
for i in $(seq 1 "$pairs"); do
  for v in old new; do
    dir=$old; [ $v = new ] && dir=$new
    python3 bench/perf-2026-12-02f/cpumon.py 1 > "$out/cpu-$v-$i.txt" &
    mon=$!
    "$dir/finalbench" "$@" > "$out/$v-$i.log" 2>&1
    kill $mon; mon=
  done
done
