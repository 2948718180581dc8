"""One optimizer update, for any task: micro-batches (gradient accumulation), autocast, the non-finite guard.

The task's ``loss(module, batch, ctx)`` forwards a batch and returns the total with its named, weighted terms
(:class:`~visionattn.tasks.LossOutput`); this module only sums, scales, backpropagates, clips and steps. Values
stay on the device: one host read per update (whether to skip it), none per micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..comm import DistInfo, all_reduce_any
from ..tasks import LossOutput
from ..tasks.runtime import autocast_context, batch_size, to_device

__all__ = ["StepResult", "run_update", "autocast_context"]


@dataclass
class StepResult:
    """What one update did. ``loss``: mean total over its micro-batches (device tensor; NaN if any was not
    finite); ``terms``: mean of each named term; ``stats``: summed ``(numerator, denominator)`` pairs; ``samples``:
    batch items seen; ``grad_norm``: the gradient norm before clipping (device tensor); ``skipped``: no optimizer step
    was taken (a loss or the gradient was not finite on some rank)."""

    loss: Tensor
    grad_norm: Tensor
    skipped: bool
    samples: int
    terms: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)


def run_update(module: nn.Module, params: Sequence[Tensor], optimizer: torch.optim.Optimizer, batches: list,
               loss_fn: Callable[[nn.Module, object], LossOutput], *, device: torch.device, precision: str,
               info: DistInfo, scaler: torch.amp.GradScaler | None = None, clip_grad: float | None = None,
               before_step: Callable[[], None] | None = None) -> StepResult:
    """Forward/backward every micro-batch of ``batches`` through ``loss_fn(module, batch)`` (under autocast for
    ``precision``; each loss divided by the number of micro-batches), then — unless a loss or the gradient is not
    finite on any rank, when the gradients are dropped and the update is skipped — call ``before_step`` (e.g. a task
    freezing a layer's gradient), clip ``params``' gradient norm to ``clip_grad`` and step ``optimizer`` (through
    ``scaler`` for fp16). DDP's gradient sync runs on the last micro-batch only (``no_sync``)."""
    n = len(batches)
    finite = torch.ones((), dtype=torch.bool, device=device)
    loss_sum = torch.zeros((), device=device)
    terms: dict[str, Tensor] = {}
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    samples = 0
    for i, batch in enumerate(batches):
        batch = to_device(batch, device)
        sync = contextlib.nullcontext() if i == n - 1 or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            with autocast_context(device, precision):
                out = loss_fn(module, batch)
            total = out.total.float()
            finite &= torch.isfinite(total.detach())
            scaled = total / n
            if scaler is not None:
                scaled = scaler.scale(scaled)
            scaled.backward()  # also when non-finite: every rank must run the same collectives
        loss_sum += total.detach()
        for name, value in out.terms.items():
            terms[name] = terms.get(name, 0) + value.detach().float() / n
        for name, (num, den) in out.stats.items():
            old = stats.get(name, (0, 0))
            stats[name] = (old[0] + num.detach(), old[1] + den.detach())
        samples += batch_size(batch)
    if scaler is not None:
        scaler.unscale_(optimizer)
    with_grad = [p for p in params if p.grad is not None]
    max_norm = clip_grad or float("inf")
    norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm) if with_grad else torch.zeros((), device=device)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor
    bad = ~finite
    if scaler is None:  # with a scaler, inf gradients are its business (it skips the step and lowers the scale)
        bad = bad | ~torch.isfinite(norm.detach().to(device))
    skipped = all_reduce_any(bad, info)  # the one host read of the update
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()
    else:
        if before_step is not None:
            before_step()
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss = torch.where(finite, loss_sum / n, torch.full((), float("nan"), device=device))
    return StepResult(loss=loss, grad_norm=norm.detach(), skipped=skipped, samples=samples, terms=terms, stats=stats)
