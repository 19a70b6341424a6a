#!/bin/bash
# RabbitMQ's two Erlang schedulers bound to one core each (as rabbitmq-server starts them,
# +stbt db) against free to run on either (their threads' affinity widened with taskset),
# interleaved (always bound first in a pair), nothing else running; as root:
#   bash bench/perf-2026-12-03j/bind-ab.sh OUTDIR ROUNDS [finalbench flags...]
# writes OUTDIR/{bound,free}-R.log (bench/perf-2026-12-03b/run.sh each) and gives the
# scheduler threads back the affinity they had when it started. FINALBENCH=/dir/finalbench
# names the binary.
set -e
cd "$(dirname "$0")/../.."
out=$1 rounds=$2; shift 2
mkdir -p "$out"
beam=$(ss -ltnpH 'sport = :5672' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2) # the node on the broker's port
declare -A was # scheduler thread id -> its CPU list at the start
for t in /proc/$beam/task/*; do
  case $(cat "$t/comm") in
    [0-9]*_scheduler) was[${t##*/}]=$(taskset -p -c "${t##*/}" | sed 's/.*: //') ;;
  esac
done
bind() { # bind free|bound: every scheduler thread on every core, or where it was
  for tid in "${!was[@]}"; do
    if [ "$1" = free ]; then taskset -p -c 0-$(($(nproc) - 1)) "$tid" >/dev/null
    else taskset -p -c "${was[$tid]}" "$tid" >/dev/null; fi
  done
}
trap 'bind bound' EXIT
for r in $(seq 1 "$rounds"); do
  for v in bound free; do
    bind $v
    grep -H Cpus_allowed_list /proc/$beam/task/*/status | grep -c ":\s*0-$(($(nproc) - 1))$" > "$out/$v-$r.affinity"
    bash bench/perf-2026-12-03b/run.sh "$out/$v-$r" "$@"
  done
done
