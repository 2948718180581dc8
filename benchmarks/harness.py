"""Timing harness shared by the operator benchmark sections: alternating side-by-side measurement with a
noise budget, forward / forward+backward closures, and the table / JSON record helpers."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from noise import clock, cpu_seconds, wait_quiet

RESULTS: list[dict] = []
OTHERS: list[float] = []  # % of the machine used by other processes during each measurement
NOISE_LEFT = [0.0]  # seconds the whole run may still spend waiting for quiet / re-measuring (--noise-budget)


# ---------------------------------------------------------------------------------------------------
# timing
class Budget:
    """Repeat counts: warmup calls, then as many alternating rounds as fit ``seconds`` (within bounds)."""

    def __init__(self, warmup: int, min_reps: int, max_reps: int, seconds: float, quiet_wait: float = 0.0,
                 retries: int = 0):
        self.warmup, self.min_reps, self.max_reps, self.seconds = warmup, min_reps, max_reps, seconds
        self.quiet_wait = quiet_wait  # wait up to this long for other processes to go quiet before timing
        self.retries = retries  # measure again (after waiting) when other processes interfered


def measure(cases: dict[str, Callable[[], object]], budget: Budget) -> dict[str, dict]:
    """Time each callable, alternating the order every round; returns ms statistics per case, plus the share
    of the machine that other processes used meanwhile (``others_pct``: noise on a shared box). When others
    used more than 10 % of the machine, wait for quiet and measure again (``budget.retries`` times); the
    attempt with the least interference is kept."""
    best = None
    for attempt in range(1 + budget.retries):
        t0 = time.perf_counter()
        wait = min(NOISE_LEFT[0], budget.quiet_wait if attempt == 0 else max(30.0, budget.quiet_wait))
        out = _measure_once(cases, budget, wait_quiet(wait))
        others = next(iter(out.values()))["others_pct"]
        if best is None or others < next(iter(best.values()))["others_pct"]:
            best = out
        if attempt:  # waiting and re-measuring share one budget for the whole run
            NOISE_LEFT[0] -= time.perf_counter() - t0
        else:
            NOISE_LEFT[0] -= out[next(iter(out))]["waited_s"]
        if math.isnan(others) or others <= 10.0 or NOISE_LEFT[0] <= 0:
            break
    for stat in best.values():
        stat["attempts"] = attempt + 1
    if not math.isnan(next(iter(best.values()))["others_pct"]):
        OTHERS.append(next(iter(best.values()))["others_pct"])
    return best


def _measure_once(cases: dict[str, Callable[[], object]], budget: Budget, waited: float) -> dict[str, dict]:
    names = list(cases)
    b0, o0 = cpu_seconds()
    w0 = time.perf_counter()
    last = {}
    for name in names:
        for _ in range(max(1, budget.warmup)):
            t0 = clock()
            cases[name]()
            last[name] = clock() - t0
            if last[name] > 1.0:  # slow case: one warmup call is enough
                break
    per_round = sum(last.values())
    reps = int(min(budget.max_reps, max(budget.min_reps, budget.seconds // max(per_round, 1e-6))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            t0 = clock()
            cases[name]()
            times[name].append((clock() - t0) * 1e3)
    b1, o1 = cpu_seconds()
    elapsed = time.perf_counter() - w0
    others = float("nan")  # /proc/stat counts 10 ms ticks: too coarse for short measurements
    if elapsed > 1.0:
        others = min(100.0, 100.0 * max(0.0, (b1 - b0) - (o1 - o0)) / (elapsed * (os.cpu_count() or 1)))
    out = {}
    for name, ts in times.items():
        ts.sort()
        q1, q3 = ts[len(ts) // 4], ts[(3 * len(ts)) // 4]
        med = statistics.median(ts)
        out[name] = {"ms": med, "iqr_pct": 100.0 * (q3 - q1) / med, "reps": reps, "others_pct": others,
                     "waited_s": waited}
    return out


def forward_only(fn: Callable, *args) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn(*args)

    return run


def forward_backward(fn: Callable, inputs: list[torch.Tensor], params: list[torch.Tensor], grad: torch.Tensor):
    """fwd + bwd w.r.t. the inputs and the parameters, with a fixed output gradient; grads reset each call."""

    def run():
        out = fn(*inputs)
        out.backward(grad)
        for t in (*inputs, *params):
            t.grad = None

    return run


# ---------------------------------------------------------------------------------------------------
# printing
def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n### {title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        cells = [str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells))
    sys.stdout.flush()


def ms(stat: dict) -> str:
    return f"{stat['ms']:.1f} ±{stat['iqr_pct']:.0f}%"


def busy(stats: dict) -> str:
    """Share of the machine other processes used while this row was measured."""
    one = next(iter(stats.values())) if "others_pct" not in stats else stats
    return "-" if math.isnan(one["others_pct"]) else f"{one['others_pct']:.0f}%"


def ratio(anchor: dict, ours: dict) -> str:
    return f"{anchor['ms'] / ours['ms']:.2f}x"


def record(section: str, case: str, dtype: str, mode: str, stats: dict[str, dict], **extra) -> None:
    RESULTS.append({"section": section, "case": case, "dtype": dtype, "mode": mode, "stats": stats, **extra})


def note(text: str) -> None:
    print(f"  note: {text}")
    sys.stdout.flush()
