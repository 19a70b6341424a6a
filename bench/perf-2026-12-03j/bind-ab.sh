#!/bin/bash
# RabbitMQ's two Erlang schedulers bound to one core each (as rabbitmq-server starts them,
# +stbt db) against free to run on either (their threads' affinity widened with taskset),
# interleaved, nothing else running:
#   bash bench/perf-2026-12-03j/bind-ab.sh OUTDIR ROUNDS [finalbench flags...]
# writes OUTDIR/{bound,free}-R.log (bench/perf-2026-12-03b/run.sh each) and leaves the
# schedulers bound as they started. FINALBENCH=/dir/finalbench names the binary.
set -e
cd "$(dirname "$0")/../.."
out=$1 rounds=$2; shift 2
mkdir -p "$out"
beam=$(pgrep -f beam.smp | head -1)
bind() { # bind free|bound: scheduler N on core N-1, or on every core
  for t in /proc/$beam/task/*; do
    case $(cat "$t/comm") in
      1_scheduler) [ "$1" = free ] && taskset -p -c 0-1 "${t##*/}" >/dev/null || taskset -p -c 0 "${t##*/}" >/dev/null ;;
      2_scheduler) [ "$1" = free ] && taskset -p -c 0-1 "${t##*/}" >/dev/null || taskset -p -c 1 "${t##*/}" >/dev/null ;;
    esac
  done
}
trap 'bind bound' EXIT
for r in $(seq 1 "$rounds"); do
  for v in bound free; do
    bind $v
    grep -H Cpus_allowed_list /proc/$beam/task/*/status | grep -c ':\s*0-1$' > "$out/$v-$r.affinity"
    bash bench/perf-2026-12-03b/run.sh "$out/$v-$r" "$@"
  done
done
