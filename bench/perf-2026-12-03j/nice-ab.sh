#!/bin/bash
# RabbitMQ at the priority it runs at (nice 0 here) against ahead of the rest (every thread
# of beam.smp at nice -10), interleaved (always the first in a pair), nothing else running;
# as root:
#   bash bench/perf-2026-12-03j/nice-ab.sh OUTDIR ROUNDS [finalbench flags...]
# writes OUTDIR/{nice0,nice-10}-R.log (bench/perf-2026-12-03b/run.sh each) and gives every
# thread back the nice value it had when it started. FINALBENCH=/dir/finalbench names the
# binary.
set -e
cd "$(dirname "$0")/../.."
out=$1 rounds=$2; shift 2
mkdir -p "$out"
beam=$(ss -ltnpH 'sport = :5672' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2) # the node on the broker's port
declare -A was # thread id -> its nice value at the start
for t in /proc/$beam/task/*; do was[${t##*/}]=$(sed 's/.*) //' "$t/stat" | awk '{print $17}'); done
prio() { # prio N|back
  for tid in "${!was[@]}"; do renice --priority "$([ "$1" = back ] && echo "${was[$tid]}" || echo "$1")" -p "$tid" >/dev/null || echo "nice-ab: renice of thread $tid failed" >&2; done
}
trap 'prio back' EXIT
for r in $(seq 1 "$rounds"); do
  for n in 0 -10; do
    prio $n
    ps -L -o ni= -p $beam | sort | uniq -c > "$out/nice$n-$r.prio"
    bash bench/perf-2026-12-03b/run.sh "$out/nice$n-$r" "$@"
  done
done
