#!/bin/bash
# RabbitMQ at the machine's usual priority (nice 0) against ahead of the rest (every thread of
# beam.smp at nice -10), interleaved, nothing else running:
#   bash bench/perf-2026-12-03j/nice-ab.sh OUTDIR ROUNDS [finalbench flags...]
# writes OUTDIR/{nice0,nice-10}-R.log (bench/perf-2026-12-03b/run.sh each) and leaves the
# broker at nice 0. FINALBENCH=/dir/finalbench names the binary.
set -e
cd "$(dirname "$0")/../.."
out=$1 rounds=$2; shift 2
mkdir -p "$out"
beam=$(pgrep -f beam.smp | head -1)
prio() { for t in /proc/$beam/task/*; do renice -n "$1" -p "${t##*/}" >/dev/null; done; }
trap 'prio 0' EXIT
for r in $(seq 1 "$rounds"); do
  for n in 0 -10; do
    prio $n
    ps -L -o ni= -p $beam | sort | uniq -c > "$out/nice$n-$r.prio"
    bash bench/perf-2026-12-03b/run.sh "$out/nice$n-$r" "$@"
  done
done
