"""An experiment's results: per-seed rows, mean ± std per variant (and sweep point), the claimed ordering checked,
written as ``results.csv`` (one row per run), ``summary.md`` and ``results.json``.

A run result (what the runner collects, also each run's ``result.json``) is a dict::

    variant, point ({sweep key: value}), seed, run_id, status ("ok" | "failed"), error (str, "" when ok),
    metrics ({name: float}), wall_s

Statistics: ``mean`` and ``std`` over the seeds of a group that finished (``std`` is the sample standard deviation,
``ddof=1``; ``None`` with one seed). A claim ``a < b`` at a sweep point is *reproduced* when ``mean_a < mean_b``;
the confidence is **high** when the ``mean ± std`` intervals do not overlap and b beat a on every paired seed,
**low** otherwise; a paired t-test over the common seeds (``scipy.stats.ttest_rel``) is reported beside it.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Group", "Verdict", "summarize", "check_ordering", "write_csv", "write_json", "format_markdown",
           "format_value", "is_percent"]


@dataclass
class Group:
    """One (variant, sweep point): the headline metric per seed and its mean ± std, and the extra columns' means."""

    variant: str
    point: dict
    values: dict[int, float]  # seed → headline metric (finished runs)
    failed: dict[int, str]  # seed → error
    mean: float | None
    std: float | None
    extras: dict[str, tuple[float | None, float | None, int]] = field(default_factory=dict)  # key → (mean, std, n)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def x(self):
        return next(iter(self.point.values()), None)


@dataclass
class Verdict:
    """Claim ``low < high`` at one sweep point."""

    low: str
    high: str
    point: dict
    mean_low: float | None
    mean_high: float | None
    diff: float | None  # mean_high - mean_low
    wins: int  # paired seeds where high > low
    pairs: int
    p_value: float | None
    result: str  # "reproduced", "not reproduced", "undecided" (missing runs)
    confidence: str  # "high", "low", ""
    reason: str


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) of ``values``; ``(None, None)`` if empty, std ``None`` for one value."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def summarize(results: list[dict], metric: str, extras: list[str] = ()) -> list[Group]:
    """Groups in first-seen order (the plan's: variant → point). A finished run without a finite ``metric`` counts
    as failed."""
    groups: dict[tuple, Group] = {}
    extra_values: dict[tuple, dict[str, list[float]]] = {}
    for r in results:
        key = (r["variant"], json.dumps(r.get("point") or {}, sort_keys=True, default=str))
        g = groups.setdefault(key, Group(r["variant"], dict(r.get("point") or {}), {}, {}, None, None))
        ev = extra_values.setdefault(key, {k: [] for k in extras})
        value = _number((r.get("metrics") or {}).get(metric))
        if r.get("status") != "ok":
            g.failed[r["seed"]] = r.get("error") or "failed"
        elif value is None:
            g.failed[r["seed"]] = f"no finite {metric!r} in the run's metrics"
        else:
            g.values[r["seed"]] = value
            for k in extras:
                v = _number(r["metrics"].get(k))
                if v is not None:
                    ev[k].append(v)
    for key, g in groups.items():
        g.mean, g.std = mean_std(list(g.values.values()))
        g.extras = {k: (*mean_std(vs), len(vs)) for k, vs in extra_values[key].items()}
    return list(groups.values())


def _paired_p(diffs: list[float]) -> float | None:
    if len(diffs) < 2 or statistics.pstdev(diffs) == 0:
        return None
    from scipy import stats

    return float(stats.ttest_1samp(diffs, 0.0).pvalue)  # = ttest_rel(high, low)


def check_ordering(groups: list[Group], ordering: list[tuple[str, str]]) -> list[Verdict]:
    """One :class:`Verdict` per claim ``low < high`` and sweep point (see the module docstring)."""
    by_key = {(g.variant, json.dumps(g.point, sort_keys=True, default=str)): g for g in groups}
    points = []
    for g in groups:
        if g.point not in points:
            points.append(g.point)
    out = []
    for low, high in ordering:
        for point in points:
            key = json.dumps(point, sort_keys=True, default=str)
            a, b = by_key.get((low, key)), by_key.get((high, key))
            if a is None or b is None or a.mean is None or b.mean is None:
                out.append(Verdict(low, high, point, a and a.mean, b and b.mean, None, 0, 0, None, "undecided", "",
                                   "a variant has no finished run"))
                continue
            common = sorted(set(a.values) & set(b.values))
            diffs = [b.values[s] - a.values[s] for s in common]
            wins = sum(d > 0 for d in diffs)
            diff = b.mean - a.mean
            p = _paired_p(diffs)
            sa, sb = a.std or 0.0, b.std or 0.0
            overlap = a.mean - sa <= b.mean + sb and b.mean - sb <= a.mean + sa  # the mean ± std intervals
            if diff > 0:
                single = a.std is None or b.std is None
                high_conf = not overlap and not single and wins == len(common)
                why = ("the mean ± std intervals do not overlap and it won on every seed" if high_conf else
                       "one seed only" if single else "the mean ± std intervals overlap" if overlap else
                       f"it won on {wins}/{len(common)} seeds only")
                out.append(Verdict(low, high, point, a.mean, b.mean, diff, wins, len(common), p, "reproduced",
                                   "high" if high_conf else "low", why))
            else:
                why = "equal means" if diff == 0 else ("reversed; the mean ± std intervals overlap" if overlap else
                                                       "reversed beyond ± std")
                out.append(Verdict(low, high, point, a.mean, b.mean, diff, wins, len(common), p, "not reproduced",
                                   "", why))
    return out


# -- formatting ---------------------------------------------------------------------------------------------------
def is_percent(key: str) -> bool:
    """Accuracy-like keys (fractions in [0, 1]) are shown in percent."""
    return key.endswith(("top1", "top5", "acc", "accuracy"))


def format_value(key: str, value: float | None, std: float | None = None) -> str:
    """``97.50 ± 0.25`` (percent for accuracy keys), 4 significant digits otherwise; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if is_percent(key):
        text = f"{100 * value:.2f}"
        return text + (f" ± {100 * std:.2f}" if std is not None else "")
    text = f"{value:.4g}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def _point_text(point: dict) -> str:
    """The sweep point by its first key (the others are zipped to it)."""
    return ", ".join(f"{k}={v}" for k, v in list(point.items())[:1])


def format_markdown(info: dict, groups: list[Group], verdicts: list[Verdict], metric: str,
                    extras: list[str], x_key: str | None) -> str:
    """``summary.md``: claim, command, seeds, the table (mean ± std, n, per seed, extras), the ordering verdicts,
    the failures. ``info``: name, claim, command, seeds, wall_s, n_runs, failed, out_dir, expected."""
    unit = " (%)" if is_percent(metric) else ""
    lines = [f"# {info['name']}", "", f"**Claim.** {info['claim']}", "",
             f"Command: `{info['command']}`  ", f"Seeds: {info['seeds']}; runs: {info['n_runs']} "
             f"({info['failed']} failed); wall time {info['wall_s']:.0f} s with {info.get('jobs', 1)} process(es) "
             f"on {info.get('cpu_count')} CPUs; summed over the runs, including any finished earlier: wall "
             f"{info.get('sum_run_wall_s', 0):.0f} s, CPU {info.get('sum_run_cpu_s', 0):.0f} s.", ""]
    x_col = [x_key.rsplit(".", 1)[-1]] if x_key else []
    head = ["variant", *x_col, f"{metric}{unit} mean ± std", "n", "per seed", *extras]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        per_seed = ", ".join(f"s{s}: {format_value(metric, v)}" for s, v in sorted(g.values.items()))
        if g.failed:
            per_seed += ("; " if per_seed else "") + ", ".join(f"s{s}: FAILED" for s in sorted(g.failed))
        cells = [g.variant, *([str(g.x)] if x_key else []), format_value(metric, g.mean, g.std), str(g.n), per_seed]
        for k in extras:
            mean, std, n = g.extras.get(k, (None, None, 0))
            cells.append(format_value(k, mean, std))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("n: seeds that finished; ± is the sample standard deviation over them (ddof = 1).")
    if verdicts:
        lines += ["", "## Claimed ordering", ""]
        for v in verdicts:
            where = f" at {_point_text(v.point)}" if v.point else ""
            conf = f", {v.confidence} confidence" if v.confidence else ""
            diff = "" if v.diff is None else f" (difference {format_value(metric, v.diff)}"
            paired = "" if v.diff is None else (f"; paired: higher on {v.wins}/{v.pairs} seeds" +
                                                (f", t-test p = {v.p_value:.2g}" if v.p_value is not None else "")
                                                + ")")
            lines.append(f"- `{v.low} < {v.high}`{where}: **{v.result}**{conf}: {v.reason}{diff}{paired}.")
        done = [v for v in verdicts if v.result != "undecided"]
        ok = sum(v.result == "reproduced" for v in done)
        strong = sum(v.confidence == "high" for v in done)
        lines += ["", f"Overall: {ok} of {len(done)} claimed comparisons reproduced in direction, {strong} with high "
                  f"confidence."]
    failures = [(g.variant, g.point, s, e) for g in groups for s, e in sorted(g.failed.items())]
    if failures:
        lines += ["", "## Failed runs", ""]
        for variant, point, seed, error in failures:
            where = f" {_point_text(point)}" if point else ""
            lines.append(f"- {variant}{where} seed {seed}: {error.strip().splitlines()[-1] if error else 'failed'}")
    if info.get("expected"):
        lines += ["", "## Previously measured (the experiment file's `expected`)", "", info["expected"]]
    return "\n".join(lines) + "\n"


def write_csv(results: list[dict], path: Path, metric: str) -> None:
    """One row per run: variant, sweep keys, seed, status, the headline metric, every other metric, error."""
    point_keys = list(dict.fromkeys(k for r in results for k in (r.get("point") or {})))
    metric_keys = sorted({k for r in results for k in (r.get("metrics") or {})} - {metric})
    fields = ["variant", *point_keys, "seed", "status", metric, *metric_keys, "wall_s", "cpu_s", "run_id", "error"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = {"variant": r["variant"], "seed": r["seed"], "status": r["status"], "wall_s": r.get("wall_s"),
                   "cpu_s": r.get("cpu_s"),
                   "run_id": r.get("run_id"), "error": (r.get("error") or "").strip().splitlines()[-1:] or ""}
            row["error"] = row["error"][0] if row["error"] else ""
            row.update(r.get("point") or {})
            row.update({k: v for k, v in (r.get("metrics") or {}).items() if k in fields})
            writer.writerow(row)


def write_json(path: Path, info: dict, results: list[dict], groups: list[Group], verdicts: list[Verdict]) -> None:
    payload = {**info, "runs": results, "summary": [
        {**asdict(g), "n": g.n, "values": {str(s): v for s, v in g.values.items()},
         "failed": {str(s): e for s, e in g.failed.items()},
         "extras": {k: {"mean": m, "std": s, "n": n} for k, (m, s, n) in g.extras.items()}} for g in groups],
        "ordering": [asdict(v) for v in verdicts]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
