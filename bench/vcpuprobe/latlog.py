"""What bursts.py and overlap.py both read: a finalbench -latency-log file, the start its
times count from, and vcpuprobe's pauses on the same clock."""
import gzip
import re


def start(log):
    """The producers' start, Unix seconds, from the .start file beside LOG.tsv(.gz)."""
    return float(open(re.sub(r"\.tsv(\.gz)?$", ".start", log)).read())


def deliveries(log):
    """The log's rows: (commit, delivery, latency), all in ms, commit and delivery from the start."""
    with (gzip.open(log, "rt") if log.endswith(".gz") else open(log)) as f:
        next(f)
        return [tuple(map(float, line.split())) for line in f]


def pauses(gaps, start):
    """vcpuprobe's late wake-ups as (from, to, cpu), ms from start: the CPU did not run from
    the wake-up less its lateness to the wake-up."""
    out = []
    for line in open(gaps):
        t, cpu, late = line.split()
        to = (float(t) - start) * 1e3
        out.append((to - float(late), to, int(cpu)))
    return sorted(out)
