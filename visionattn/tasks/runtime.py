"""Running a model on batches, the same way for every task: device moves, autocast, the real part of a padded
evaluation shard, and the generic evaluation loop.

A batch is whatever a task's collate returns: tensors, lists, tuples and dicts of them, nested (DETR's targets are
a list of dicts of tensors). :func:`to_device` and :func:`take` walk that structure.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from .base import EvalContext, Evaluation, Metric

__all__ = ["autocast_context", "run_evaluation", "take", "to_device"]


def autocast_context(device: torch.device, precision: str):
    """bf16 / fp16 autocast on ``device`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch, device: torch.device, non_blocking: bool = True):
    """Every tensor in ``batch`` (nested dicts / lists / tuples) moved to ``device``; other leaves unchanged."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in batch]
        return type(batch)(moved) if isinstance(batch, tuple) and not hasattr(batch, "_fields") else moved
    return batch


def batch_size(batch) -> int:
    """The number of samples in ``batch``: the leading size of its first tensor, or the length of its first list."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            return batch_size(value)
    if isinstance(batch, (list, tuple)):
        return len(batch)
    raise ValueError(f"batch: expected tensors, lists or dicts of them, got {type(batch).__name__}")


def take(batch, n: int):
    """The first ``n`` samples of ``batch``: every tensor sliced on dim 0, every list / tuple cut to ``n`` items,
    dicts walked (a list of per-sample dicts is cut, not walked)."""
    if isinstance(batch, Tensor):
        return batch[:n] if batch.ndim else batch
    if isinstance(batch, dict):
        return {k: take(v, n) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return batch[:n]
    return batch


@torch.no_grad()
def run_evaluation(model: nn.Module, loader, forward, metric: Metric, ctx: EvalContext, valid: int | None = None,
                   ) -> Evaluation:
    """``metric`` over ``loader``: each batch goes to ``ctx.device``, through ``forward(model, batch)`` under
    autocast, and the first ``valid`` samples of this rank's shard (all when None) update the metric; then the
    metric is reduced over the ranks and computed. The model is put in eval mode and back."""
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in loader:
            batch = to_device(batch, ctx.device)
            with autocast_context(ctx.device, ctx.precision):
                outputs = forward(model, batch)
            n = batch_size(batch)
            keep = n if valid is None else max(0, min(n, valid - seen))
            seen += n
            if keep == 0:
                continue
            if keep < n:
                outputs, batch = take(outputs, keep), take(batch, keep)
            metric.update(outputs, batch)
    finally:
        model.train(was_training)
    metric.reduce(ctx.info)
    return metric.compute()
