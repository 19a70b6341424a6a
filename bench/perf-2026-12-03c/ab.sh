#!/bin/bash
# Interleaved A/B of two finalbench binaries (each in a directory of its own,
# named finalbench so that cpumon.py counts it), nothing else running:
#   bash bench/perf-2026-12-03c/ab.sh OUTDIR PAIRS OLD_DIR NEW_DIR [finalbench flags...]
# writes OUTDIR/{old,new}-N.log, OUTDIR/{old,new}-N/ and OUTDIR/cpu-{old,new}-N.txt, one
# bench/perf-2026-12-03b/run.sh each. (The tenth session's range-delete/ pairs ran an earlier
# form of this script, which left each run's results.json in the ignored bench/latest.)
set -e
cd "$(dirname "$0")/../.."
out=$1 pairs=$2 old=$3 new=$4; shift 4
mkdir -p "$out"
for i in $(seq 1 "$pairs"); do
  for v in old new; do
    dir=$old; [ $v = new ] && dir=$new
    FINALBENCH=$dir/finalbench bash bench/perf-2026-12-03b/run.sh "$out/$v-$i" "$@"
  done
done
