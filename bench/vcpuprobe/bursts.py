#!/usr/bin/env python3
"""The slow stretches of a finalbench latency log (.tsv or .tsv.gz), each with what was
seen around it: RabbitMQ's runtime (sysmon.erl.txt's output), the virtual CPUs (vcpuprobe)
and the broker's scheduler threads (runqwait.py).

    python3 bench/vcpuprobe/bursts.py LOG.tsv [--sysmon F] [--gaps F] [--runq F] [--slow MS] [--min N]

A stretch is deliveries slower than --slow (15 ms) whose commits are less than 50 ms apart,
listed when it holds --min (5) or more; beside it, from 100 ms before its first commit to its
last delivery: the runtime's events (long_schedule, long_gc: a process or port that held a
scheduler, or whose collection took, that many ms), the virtual CPUs' pauses (a CPU that did
not run for that many ms) and the scheduler threads' waits for a CPU (ms waited in a sampling
interval). With --runq it first gives the scheduler threads' waits over the log's span. Times
in seconds from the producers' start (LOG.start).
"""
import argparse
import re

import latlog

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("--sysmon")
ap.add_argument("--gaps")
ap.add_argument("--runq")
ap.add_argument("--slow", type=float, default=15.0)
ap.add_argument("--min", type=int, default=5)
a = ap.parse_args()
start = latlog.start(a.log)

events = []  # (t, text)
if a.sysmon:
    for e in re.split(r"\n(?=\d{10}\.\d{3} )", open(a.sysmon).read().strip()):
        e = " ".join(e.split())
        if not e:
            continue
        t, kind = e.split()[:2]
        to = re.search(r"\{timeout,\s*(\d+)\}", e)
        what = re.search(r"\{in,\s*\{(\w+),\s*(\w+),", e)
        where = f" {what.group(1)}:{what.group(2)}" if what else (" port" if "#Port" in e else "")
        events.append((float(t) - start, f"{kind} {to.group(1) if to else '?'}ms{where}"))
if a.gaps:
    for frm, to, cpu in latlog.pauses(a.gaps, start):
        events.append((to / 1e3, f"cpu{cpu} paused {to - frm:.0f}ms"))
waits = []  # (t, thread, ms waited)
if a.runq:
    for line in open(a.runq):
        t, name, waited, _ = line.split()
        if name.endswith("_scheduler"):  # the schedulers that run Erlang processes
            waits.append((float(t) - start, name, float(waited)))
            if float(waited) >= 5:
                events.append((float(t) - start, f"{name} waited {float(waited):.0f}ms for a CPU"))
events.sort()

rows = [(c / 1e3, d / 1e3, l) for c, d, l in latlog.deliveries(a.log)]
end = max(d for _, d, _ in rows)
if a.runq:
    span = [w for w in waits if 0 <= w[0] <= end]
    threads = max(1, len({w[1] for w in span}))
    total = sum(w[2] for w in span)
    print(f"{a.log}: the scheduler threads waited {total:.0f} ms for a CPU in {end:.1f} s "
          f"({total / (end * 1e3 * threads):.1%} of each one's time); "
          f"intervals of 10 ms or more: {sum(1 for w in span if w[2] >= 10)}, longest {max((w[2] for w in span), default=0):.1f} ms")

stretches = []
for c, d, l in rows:
    if l <= a.slow:
        continue
    if stretches and c - stretches[-1][1] < 0.05:
        s = stretches[-1]
        s[1], s[2], s[3], s[4] = c, max(s[2], d), s[3] + 1, max(s[4], l)
    else:
        stretches.append([c, c, d, 1, l])
for first, last, delivered, n, lmax in stretches:
    if n < a.min:
        continue
    print(f"{first:.3f}-{last:.3f} s: {n} slower than {a.slow:g} ms (max {lmax:.1f}), delivered by {delivered:.3f}")
    if a.runq:
        w = sum(x[2] for x in waits if first - 0.03 <= x[0] <= delivered)
        print(f"    the scheduler threads waited {w:.0f} ms for a CPU from 30 ms before its first commit to its last delivery")
    for t, x in events:
        if first - 0.1 <= t <= delivered:
            print(f"    {t:.3f} {x}")
