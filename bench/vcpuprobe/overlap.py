#!/usr/bin/env python3
"""Lines a finalbench latency log up with vcpuprobe's late wake-ups.

    python3 bench/vcpuprobe/overlap.py GAPS LOG.tsv [SLOW_MS [SHIFT_MS...]]

GAPS is vcpuprobe's output (unix time of the late wake-up, cpu, late by ms); LOG.tsv (or
.tsv.gz) a -latency-log file with its LOG.start beside it. A CPU is taken as not running from
(wake-up - late) to the wake-up. Prints, for the deliveries slower than SLOW_MS (10) and for
the rest, the share whose commit-to-delivery interval overlaps such a pause, and how much
pause (summed over both CPUs) the slow ones spanned. Each SHIFT_MS repeats the count with
every pause moved that much later: where the pauses would be met by chance by intervals as
long as the slow ones (a control for their length).
"""
import sys

import latlog

gaps_path, log_path = sys.argv[1], sys.argv[2]
slow_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
shifts = [float(x) for x in sys.argv[4:]]
gaps = latlog.pauses(gaps_path, latlog.start(log_path))  # (from, to, cpu), ms from the log's start
rows = latlog.deliveries(log_path)
end = max(d for _, d, _ in rows)
inrun = [g for g in gaps if g[1] >= 0 and g[0] <= end]

def spanned(c, d):
    return sum(min(d, b) - max(c, a) for a, b, _ in inrun if a < d and b > c)

slow = [r for r in rows if r[2] > slow_ms]
fast = [r for r in rows if r[2] <= slow_ms]
def share(rs):
    return sum(1 for c, d, _ in rs if spanned(c, d) > 0) / max(1, len(rs))
print(f"{log_path}: {len(rows)} deliveries over {end/1e3:.1f} s; {len(inrun)} pauses in it "
      f"(total {sum(b-a for a,b,_ in inrun):.0f} ms, longest {max((b-a for a,b,_ in inrun), default=0):.1f} ms)")
print(f"  slower than {slow_ms:g} ms: {len(slow)}, of which {share(slow):.0%} span a pause "
      f"(mean pause spanned {sum(spanned(c,d) for c,d,_ in slow)/max(1,len(slow)):.1f} ms, "
      f"mean latency {sum(l for *_,l in slow)/max(1,len(slow)):.1f} ms)")
print(f"  the rest: {len(fast)}, of which {share(fast):.0%} span a pause")
for shift in shifts:
    real = inrun
    inrun = [(a + shift, b + shift, cpu) for a, b, cpu in gaps if b + shift >= 0 and a + shift <= end]
    print(f"  pauses moved {shift:g} ms later: slower ones spanning one {share(slow):.0%}, the rest {share(fast):.0%}")
    inrun = real
