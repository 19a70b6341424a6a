#!/usr/bin/env python3
"""Samples how long chosen threads of a process waited for a CPU while runnable.

    python3 bench/vcpuprobe/runqwait.py PID 'REGEX' SECONDS [EVERY_MS] > waits.txt

Every EVERY_MS (5; a best-effort sleep) it reads /proc/PID/task/*/schedstat of the threads whose name matches
REGEX (e.g. 'scheduler' for an Erlang VM's schedulers) and prints one line per interval
in which a thread waited on a run queue 2 ms or more:
    <unix time at the interval's end, s> <thread name> <ms waited in the interval> <ms run in it>
Intervals with less wait are not printed, so sums over its output are lower bounds. A wait
includes any time the CPU the thread was queued on was itself stopped (vcpuprobe.c).
"""
import os
import re
import sys
import time

pid, pattern, seconds = sys.argv[1], re.compile(sys.argv[2]), float(sys.argv[3])
every = (float(sys.argv[4]) if len(sys.argv) > 4 else 5.0) / 1e3
tasks = {}
for tid in os.listdir(f"/proc/{pid}/task"):
    name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    if pattern.search(name):
        tasks[tid] = (name, open(f"/proc/{pid}/task/{tid}/schedstat"))
if not tasks:
    sys.exit(f"runqwait: no thread of {pid} matches {pattern.pattern}")
last = {}
end = time.monotonic() + seconds
while time.monotonic() < end:
    now = time.time()
    for tid, (name, f) in list(tasks.items()):
        try:
            f.seek(0)
            run, wait, _ = map(int, f.read().split())
        except (OSError, ValueError):  # the thread ended
            del tasks[tid]
            continue
        if tid in last:
            dr, dw = run - last[tid][0], wait - last[tid][1]
            if dw >= 2_000_000:
                print(f"{now:.3f} {name} {dw/1e6:.1f} {dr/1e6:.1f}", flush=True)
        last[tid] = (run, wait)
    time.sleep(every)
