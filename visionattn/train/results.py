"""The end of a run: the summary, the report (curves, confusion matrix, sample predictions), ``summary.json``.

Functions of a :class:`~visionattn.train.loop.Trainer` (``self``). The reporter is
``visionattn.train.report.RunReporter`` on rank 0 with ``run.report``, a no-op otherwise.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..data import denormalize
from .checkpoint import atomic_write_text
from .config import config_to_yaml

__all__ = ["Meter", "log_window", "run_summary", "finish_report", "sample_predictions", "make_reporter"]


class Meter:
    """Training loss / accuracy / throughput since it was made (non-skipped updates of this rank);
    :meth:`reduced` sums over the ranks (a collective under torchrun: every rank calls it at the same update)."""

    def __init__(self):
        self.loss, self.updates, self.correct, self.images = 0.0, 0, 0, 0
        self.start = time.perf_counter()

    def add(self, result) -> None:
        self.loss += result.loss
        self.updates += 1
        self.correct += result.correct
        self.images += result.images

    def reduced(self, info) -> dict:
        from .distributed import all_reduce_sum

        seconds = time.perf_counter() - self.start
        loss, updates, correct, images = (all_reduce_sum(float(v), info) if info.distributed else float(v)
                                          for v in (self.loss, self.updates, self.correct, self.images))
        return {"loss": loss / updates if updates else math.nan, "acc": correct / images if images else math.nan,
                "img_per_s": images / max(seconds, 1e-9), "updates": updates}


def log_window(self, meter: Meter, bar) -> None:
    """One ``steps.csv`` row / progress-bar update / log line (without a TTY) for the updates in ``meter``."""
    totals = meter.reduced(self.info)
    if not totals["updates"]:
        return
    lr = self.optimizer.param_groups[0]["lr"]
    metrics = {"loss": totals["loss"], "acc": totals["acc"], "img_per_s": totals["img_per_s"], "lr": lr,
               "epoch": self.epoch + self.batch / (self.updates_per_epoch * self.cfg.schedule.accum_steps)}
    self.reporter.log_step(self.step, metrics)
    if bar.disable:
        self.log(f"epoch {self.epoch + 1} step {self.step}/{self.total_steps}  loss {metrics['loss']:.4f}  "
                 f"acc {100 * metrics['acc']:.1f}%  {metrics['img_per_s']:.0f} img/s  lr {lr:.2e}")
    else:
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{100 * metrics['acc']:.1f}%",
                        img_s=f"{metrics['img_per_s']:.0f}", lr=f"{lr:.1e}")


def run_summary(self, paused: bool = False) -> dict:
    """Run facts for the report and ``summary.json``: sizes, steps, time, throughput, final/best accuracy."""
    params = sum(p.numel() for p in self.model.parameters())
    images = self.step * self.cfg.schedule.batch_size * self.cfg.schedule.accum_steps
    out = {
        "model": self.cfg.model.name,
        "params_m": round(params / 1e6, 4),
        "dataset": self.cfg.data.name,
        "train_images": len(self.data.train),
        "val_images": len(self.data.val),
        "epochs": self.epoch,
        "steps": self.step,
        "paused": paused,
        "train_time_s": round(self.train_time, 2),
        "train_img_per_s": round(images / self.train_time, 1) if self.train_time else None,
        "best_val_top1": self.best_metric,
        "eval_weights": self.eval_weights,
        "non_finite_steps": self.nonfinite_total,
        "skipped_files": len(getattr(self.data, "skipped", []) or []),
        "device": str(self.device),
        "world_size": self.info.world_size,
        "threads": torch.get_num_threads(),
        "run_dir": str(self.run_dir),
    }
    out.update({k: v for k, v in self.last_metrics.items() if k.startswith("val")})
    return out


def finish_report(self, summary: dict) -> None:
    """Curves, confusion matrix and sample predictions of the weights that evaluated better (rank 0 writes)."""
    result = self._last_eval.get(self.eval_weights)
    if result is None:
        return
    samples = []
    if self.is_main and self.cfg.run.report:
        model = self.ema.module if self.eval_weights == "ema" else self.model
        if not (self.cfg.run.fsdp and self.info.distributed):
            samples = sample_predictions(self, model, 16)
    self.reporter.finish(summary, config_to_yaml(self.cfg), result.confusion, samples)
    if self.is_main:
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        best = f"{100 * self.best_metric:.2f}%" if self.best_metric is not None else "n/a"
        final = "  ".join(f"{name} {100 * r.top1:.2f}%" for name, r in self._last_eval.items())
        self.log(f"done: final val top-1 {final}; best {best} (best.pt); {self.step} updates in "
                 f"{self.train_time:.1f}s of training; report {self.run_dir / 'report.html'}")


@torch.no_grad()
def sample_predictions(self, model, count: int) -> list:
    """The first ``count`` validation images as ``(image in [0, 1], true, predicted)`` for the report."""
    was = model.training
    model.eval()
    n = min(count, len(self.data.val))
    items = [self.data.val[i] for i in range(n)]
    x = torch.stack([img for img, _ in items]).to(self.device)
    pred = model(x).argmax(dim=-1).cpu().tolist()
    model.train(was)
    return [(denormalize(img, self.cfg.data), int(y), int(p)) for (img, y), p in zip(items, pred, strict=True)]


class _NullReporter:
    def log_step(self, step, metrics):
        pass

    def log_epoch(self, epoch, metrics):
        pass

    def finish(self, summary, config_yaml, confusion, samples):
        return None

    def close(self):
        pass


def make_reporter(run_dir: Path, classes: list[str], enabled: bool):
    if not enabled:
        return _NullReporter()
    from .report import RunReporter

    return RunReporter(run_dir, classes, enabled=True)
