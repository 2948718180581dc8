"""What a run reports while it trains: windowed training metrics, log lines, the reporter.

:class:`Meter` sums :class:`~visionattn.train.step.StepResult` s on the device and reads them once per logging
window. The reporter is ``visionattn.train.report.RunReporter`` on rank 0 with ``run.report``, a no-op otherwise.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..comm import DistInfo, all_reduce_sum

__all__ = ["Meter", "format_metric", "log_window", "make_reporter"]


class Meter:
    """Training loss, its terms, the task's stats and throughput since the meter was made (non-skipped updates of
    this rank); :meth:`reduced` sums over the ranks (a collective under torchrun: every rank calls it at the same
    update)."""

    def __init__(self):
        self.updates, self.samples = 0, 0
        self.loss: torch.Tensor | float = 0.0
        self.terms: dict[str, torch.Tensor] = {}
        self.stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.start = time.perf_counter()

    def add(self, result) -> None:
        self.loss = self.loss + result.loss.detach().double()
        self.updates += 1
        self.samples += result.samples
        for name, value in result.terms.items():
            self.terms[name] = self.terms.get(name, 0) + value.double()
        for name, (num, den) in result.stats.items():
            old = self.stats.get(name, (0, 0))
            self.stats[name] = (old[0] + num.double(), old[1] + den.double())

    def reduced(self, info: DistInfo) -> dict[str, float]:
        """``loss``, ``loss_<term>``, each stat as a ratio, ``img_per_s`` and ``updates``, over every rank."""
        seconds = time.perf_counter() - self.start
        names = list(self.terms)
        stat_names = list(self.stats)
        values = [float(self.loss), float(self.updates), float(self.samples)]
        values += [float(self.terms[n]) for n in names]
        for n in stat_names:
            values += [float(self.stats[n][0]), float(self.stats[n][1])]
        if info.distributed:  # one collective for the whole window
            values = all_reduce_sum(torch.tensor(values, dtype=torch.float64), info).tolist()
        loss, updates, samples = values[:3]
        out = {"loss": loss / updates if updates else math.nan}
        for i, name in enumerate(names):
            out[f"loss_{name}"] = values[3 + i] / updates if updates else math.nan
        base = 3 + len(names)
        for i, name in enumerate(stat_names):
            num, den = values[base + 2 * i], values[base + 2 * i + 1]
            out[name] = num / den if den else math.nan
        out["img_per_s"] = samples / max(seconds, 1e-9)
        out["updates"] = updates
        return out


def log_window(meter: Meter, info: DistInfo, reporter, step: int, total_steps: int, epoch: int,
               epoch_position: float, lr: float, bar, log) -> None:
    """One ``steps.csv`` row / progress-bar update / log line (without a TTY) for the updates in ``meter``.
    ``epoch``: the epoch being trained (0-based); ``epoch_position``: fractional epochs done (e.g. 1.25)."""
    totals = meter.reduced(info)
    if not totals["updates"]:
        return
    metrics = {k: v for k, v in totals.items() if k != "updates"}
    metrics.update(lr=lr, epoch=epoch_position)
    reporter.log_step(step, metrics)
    shown = {k: v for k, v in totals.items() if k not in ("loss", "img_per_s", "updates") and
             not k.startswith("loss_")}
    if bar.disable:
        stats = "".join(f"  {k} {format_metric(k, v)}" for k, v in shown.items())  # % for accuracies only
        log(f"epoch {epoch + 1} step {step}/{total_steps}  loss {metrics['loss']:.4f}{stats}  "
            f"{metrics['img_per_s']:.0f} img/s  lr {lr:.2e}")
    else:
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", **{k: format_metric(k, v) for k, v in shown.items()},
                        img_s=f"{metrics['img_per_s']:.0f}", lr=f"{lr:.1e}")


def format_metric(name: str, value) -> str:
    """A metric for a log line: percentages for accuracies (``top1``, ``top5``, ``acc``), 4 digits otherwise."""
    if value is None:
        return "n/a"
    if name.endswith(("top1", "top5", "acc")):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}"


class _NullReporter:
    def log_step(self, step, metrics):
        pass

    def log_epoch(self, epoch, metrics):
        pass

    def finish(self, summary, config_yaml, items):
        return None

    def close(self):
        pass


def make_reporter(run_dir: Path, enabled: bool):
    if not enabled:
        return _NullReporter()
    from .report import RunReporter

    return RunReporter(run_dir, enabled=True)
