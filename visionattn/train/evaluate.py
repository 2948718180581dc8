"""Evaluation: top-1 / top-5, loss, per-class accuracy and the confusion matrix; models rebuilt from checkpoints.

:func:`evaluate` runs any module whose forward gives logits (or the ``(cls, dist)`` pair of a distilled training
module) over a loader; under torchrun every rank evaluates its shard and the counts are summed, so each rank gets
the metrics of the whole set. :func:`model_from_checkpoint` rebuilds the trained model from a training checkpoint
alone (its config YAML names the preset, overrides, classes and image size). :func:`evaluate_checkpoint` is
``visionattn eval``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint
from .config import config_from_yaml, spec_overrides
from .step import autocast_context, logits_of

__all__ = ["EvalResult", "evaluate", "model_from_checkpoint", "evaluate_checkpoint", "format_eval", "WEIGHTS"]

WEIGHTS = ("auto", "model", "ema")


@dataclass
class EvalResult:
    """loss: mean cross-entropy (no smoothing). top1 / top5: fractions in [0, 1] (top5 is top-k with
    k = min(5, classes)). confusion: ``(C, C)`` int64 counts, rows = true class, columns = predicted."""

    loss: float
    top1: float
    top5: float
    count: int
    confusion: np.ndarray
    k: int = 5

    @property
    def per_class(self) -> np.ndarray:
        """Accuracy of each true class (NaN for a class with no samples)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, np.diag(self.confusion) / np.maximum(totals, 1), np.nan)

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        return {f"{prefix}loss": self.loss, f"{prefix}top1": self.top1, f"{prefix}top5": self.top5}


@torch.no_grad()
def evaluate(module: nn.Module, loader, num_classes: int, device: torch.device, precision: str = "fp32",
             info=None, valid: int | None = None) -> EvalResult:
    """Evaluate ``module`` on ``loader``. ``valid``: how many leading items of this rank's shard are real (a
    padded distributed shard repeats samples after them; they are run, for FSDP's collectives, but not counted).
    ``info``: the :class:`~visionattn.train.distributed.DistInfo` whose ranks' counts are summed (None: local)."""
    was_training = module.training
    module.eval()
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    topk_correct = torch.zeros((), dtype=torch.int64)
    seen = 0
    try:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_context(device, precision):
                logits = logits_of(module(x)).float()
            keep = y.shape[0] if valid is None else max(0, min(y.shape[0], valid - seen))
            seen += y.shape[0]
            if keep == 0:
                continue
            logits, y = logits[:keep], y[:keep]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            top = logits.topk(k, dim=-1).indices
            topk_correct += (top == y[:, None]).any(dim=-1).sum().cpu()
            pairs = (y * num_classes + top[:, 0]).cpu()
            confusion += torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)
    finally:
        module.train(was_training)
    if info is not None and info.world_size > 1:
        from .distributed import all_reduce_sum

        confusion = all_reduce_sum(confusion, info)
        loss_sum = all_reduce_sum(loss_sum, info)
        topk_correct = all_reduce_sum(topk_correct, info)
    count = int(confusion.sum())
    if count == 0:
        raise ValueError("evaluate: the loader gave no samples; expected a non-empty validation set")
    cm = confusion.numpy()
    return EvalResult(loss=float(loss_sum) / count, top1=float(np.trace(cm)) / count,
                      top5=float(topk_correct) / count, count=count, confusion=cm, k=k)


def model_from_checkpoint(path: str | Path, weights: str = "auto", map_location="cpu"):
    """Rebuild the model of a training checkpoint → ``(model in eval mode, TrainConfig, classes, state)``.

    weights: ``"model"`` (the trained weights), ``"ema"`` (their EMA), or ``"auto"``: the ones that evaluated
    better at the checkpoint's last evaluation (``state["eval_weights"]``)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights: expected one of {WEIGHTS}, got {weights!r}")
    from ..models import create_model

    state = load_checkpoint(path, map_location=map_location)
    cfg = config_from_yaml(state["config"], source=f"config inside checkpoint {str(path)!r}")
    classes = list(state["classes"])
    chosen = (state.get("eval_weights") or "model") if weights == "auto" else weights
    if chosen == "ema" and state.get("ema") is None:
        raise ValueError(f"checkpoint {str(path)!r} holds no EMA weights (the run had recipe.ema=false); "
                         f"use weights='model'")
    model = create_model(cfg.model.name, num_classes=len(classes), img_size=cfg.data.img_size,
                         **spec_overrides(cfg.model))
    model.load_state_dict(state[chosen])
    model.eval()
    model.eval_weights = chosen
    return model, cfg, classes, state


def evaluate_checkpoint(path: str | Path, data: str | None = None, data_path: str | None = None,
                        weights: str = "auto", batch_size: int = 256, device: str = "cpu"):
    """``visionattn eval``: the checkpoint's model on the validation split of dataset ``data`` (default: the
    training run's; a folder with ``train/`` and ``val/`` uses ``val/``), with the run's image size, normalisation,
    split seed and class list (a dataset whose classes differ is an error). Returns ``(EvalResult, classes,
    model)``."""
    from ..data import build_datasets

    model, cfg, classes, _ = model_from_checkpoint(path, weights)
    changes = {"randaugment": None, "random_resized_crop": False, "hflip": False, "classes": classes}
    if data is not None:
        changes.update(name=data, path=data_path)
    elif data_path is not None:
        changes["path"] = data_path
    data_cfg = dataclasses.replace(cfg.data, **changes)
    bundle = build_datasets(data_cfg)
    if list(bundle.classes) != classes:
        raise ValueError(f"dataset {data_cfg.name!r} has classes {bundle.classes}, the checkpoint was trained on "
                         f"{classes}")
    dataset = bundle.val
    dev = torch.device(device)
    model.to(dev)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return evaluate(model, loader, len(classes), dev), classes, model


def format_eval(result: EvalResult, classes: list[str]) -> str:
    """Top-1 / top-k and a per-class accuracy table."""
    lines = [f"images: {result.count}   top-1: {100 * result.top1:.2f}%   top-{result.k}: {100 * result.top5:.2f}%"
             f"   loss: {result.loss:.4f}", ""]
    width = max(5, *(len(c) for c in classes))
    lines.append(f"{'class':<{width}}  {'images':>6}  {'correct':>7}  {'accuracy':>8}")
    totals = result.confusion.sum(axis=1)
    for i, name in enumerate(classes):
        acc = result.per_class[i]
        acc_text = "-" if np.isnan(acc) else f"{100 * acc:.1f}%"
        lines.append(f"{name:<{width}}  {int(totals[i]):>6}  {int(result.confusion[i, i]):>7}  {acc_text:>8}")
    return "\n".join(lines)
