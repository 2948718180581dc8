"""Machine-noise helpers shared by the benchmarks: how busy *other* processes keep this machine.

On a small shared box (2 cores, OpenMP with 2 threads) one busy neighbour slows a model 5-10x, so the benchmarks
wait for quiet and record the foreign load next to each measurement.
"""

from __future__ import annotations

import os
import time

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_CLOCK = ["wall"]


def set_clock(name: str) -> None:
    """What :func:`clock` reads: ``'wall'`` (elapsed time) or ``'cpu'`` (CPU time of this process: with one torch
    thread, the time our work took on a core, not the time it waited for one while others' jobs ran)."""
    if name not in _CLOCKS:
        raise ValueError(f"clock must be one of {sorted(_CLOCKS)}, got {name!r}")
    _CLOCK[0] = name


def clock() -> float:
    """Seconds on the clock chosen by :func:`set_clock` (default wall)."""
    return _CLOCKS[_CLOCK[0]]()


def clock_name() -> str:
    return _CLOCK[0]


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) from /proc/stat and os.times."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = float("nan")
    t = os.times()
    return busy, t.user + t.system


def others_load(seconds: float) -> float:
    """Fraction of the machine's cores used by *other* processes over the next ``seconds`` (sleeping)."""
    b0, o0 = cpu_seconds()
    time.sleep(seconds)
    b1, o1 = cpu_seconds()
    return max(0.0, (b1 - b0) - (o1 - o0)) / (seconds * (os.cpu_count() or 1))


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` of the cores; returns seconds waited."""
    t0 = time.perf_counter()
    while max_wait > 0 and time.perf_counter() - t0 < max_wait:
        if others_load(0.5) < threshold:
            break
    return time.perf_counter() - t0
