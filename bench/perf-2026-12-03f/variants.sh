#!/bin/bash
# Interleaved runs of one finalbench binary under several sets of flags, nothing else
# running, cpumon.py beside each run:
#   bash bench/perf-2026-12-03f/variants.sh OUTDIR ROUNDS "name=flags,..." ... -- [common flags...]
# e.g. bash bench/perf-2026-12-03f/variants.sh DIR 2 base= ack128=-ack-batch,128 -- -db mysql -phases drain
# writes OUTDIR/NAME-R.log and OUTDIR/cpu-NAME-R.txt (bench/perf-2026-12-03b/run.sh each); a
# variant's flags are comma-separated; FINALBENCH=/dir/finalbench names the binary.
set -e
cd "$(dirname "$0")/../.."
out=$1 rounds=$2; shift 2
variants=()
while [ "$1" != "--" ]; do variants+=("$1"); shift; done
shift
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do
    name=${v%%=*} flags=${v#*=}
    bash bench/perf-2026-12-03b/run.sh "$out/$name-$r" ${flags//,/ } "$@"
  done
done
