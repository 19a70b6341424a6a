#!/bin/bash
# The drain against the broker and the store in series, for every full run's log given
# (default: the runs of 2026-12-02): raw = raw publish + consume beside the drain, store = the
# store alone (claim + delete, no broker), model = 1/(1/raw + 1/store), lib = the library's drain
# to the subscriber. Usage: bash bench/perf-2026-12-02g/drainmodel.sh [log ...]
[ $# -gt 0 ] || set -- bench/perf-2026-12-02{-pack,b,c,d,e,f,g,h}/*.log
for f in "$@"; do
  a=$(grep "backlog drain to subscriber" "$f" | head -1 | awk -F'|' '{print $3,$4}')
  s=$(grep "vs the store alone" "$f" | head -1 | awk -F'|' '{print $4}')
  [ -n "$a" ] && [ -n "$s" ] && echo "$f $a $s"
done | python3 -c "
import sys
for l in sys.stdin:
    f,lib,raw,st=l.split(); lib,raw,st=map(float,(lib,raw,st))
    m=1/(1/raw+1/st)
    print(f'{f:50s} raw {raw:7.0f} store {st:7.0f} model {m:7.0f} ({m/raw:.2f} of raw) lib {lib:7.0f} ({lib/raw:.2f}) lib/model {lib/m:.2f}')
"
