"""One optimizer update: micro-batches (gradient accumulation), the DeiT losses, the non-finite guard.

The module that is wrapped (DDP / FSDP2 / ``torch.compile``) is :class:`TrainModule`: the backbone, plus — for hard
distillation — a forward that returns both the class-token and distillation-token logits, so DDP sees every
parameter used through its own ``forward``.

Losses (``DeiTLoss``):

- base: cross-entropy with label smoothing on hard labels, or soft-target cross-entropy on the Mixup/CutMix targets
  (which already carry the smoothing);
- hard distillation: ``(1 - w) * base(cls_logits, y) + w * CE(dist_logits, argmax teacher(x))``, the teacher seeing
  the same (mixed) images, without label smoothing (DeiT's ``hard`` distillation, w = 0.5).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn

__all__ = ["TrainModule", "DeiTLoss", "StepResult", "autocast_context"]


class TrainModule(nn.Module):
    """``forward(x)`` → logits ``(B, classes)``, or ``(cls_logits, dist_logits)`` when ``distill`` (the model's
    ``forward_distill``). Parameter names are the backbone's under ``model.``."""

    def __init__(self, model: nn.Module, distill: bool = False):
        super().__init__()
        has_token = callable(getattr(model, "forward_distill", None)) and getattr(
            getattr(model, "spec", None), "distilled", True) is not False
        if distill and not has_token:
            preset = getattr(getattr(model, "preset", None), "name", type(model).__name__)
            raise ValueError(
                f"hard distillation trains the distillation token, so the student needs forward_distill (a "
                f"distilled DeiT such as deit_tiny_distilled_test or a spec with distilled=True); got {preset}"
            )
        self.model = model
        self.distill = distill

    def forward(self, x: Tensor):
        return self.model.forward_distill(x) if self.distill else self.model(x)


class DeiTLoss(nn.Module):
    """``loss(outputs, targets, soft_targets, teacher_labels)`` (see the module docstring)."""

    def __init__(self, label_smoothing: float = 0.0, distill_weight: float = 0.5):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.distill_weight = distill_weight
        self.soft = SoftTargetCrossEntropy()

    def base(self, logits: Tensor, targets: Tensor, soft_targets: Tensor | None) -> Tensor:
        if soft_targets is not None:
            return self.soft(logits, soft_targets)
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def forward(self, outputs, targets: Tensor, soft_targets: Tensor | None = None,
                teacher_labels: Tensor | None = None) -> Tensor:
        if teacher_labels is None:
            if isinstance(outputs, tuple):  # a distilled model trained without a teacher: the mean head
                outputs = (outputs[0] + outputs[1]) / 2
            return self.base(outputs, targets, soft_targets)
        cls_logits, dist_logits = outputs
        w = self.distill_weight
        return (1 - w) * self.base(cls_logits, targets, soft_targets) + w * F.cross_entropy(dist_logits,
                                                                                         teacher_labels)


def autocast_context(device: torch.device, precision: str):
    """bf16 / fp16 autocast on ``device`` (a no-op context for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class StepResult:
    """What one update did: mean loss over its micro-batches (NaN if any was non-finite), correct predictions and
    images seen (hard labels, before Mixup), the gradient norm before clipping, and whether it was skipped."""

    loss: float
    correct: int
    images: int
    grad_norm: float
    skipped: bool


def logits_of(outputs) -> Tensor:
    """The prediction logits of a training forward (the mean head of a distilled model)."""
    return (outputs[0] + outputs[1]) / 2 if isinstance(outputs, tuple) else outputs


def run_update(trainer, batches: list[tuple[Tensor, Tensor]]) -> StepResult:
    """Forward/backward every micro-batch of ``batches``, then clip and step unless a loss or the gradient is not
    finite on any rank (then the gradients are dropped and the update is skipped). ``trainer`` supplies the
    modules and settings (see :class:`visionattn.train.loop.Trainer`)."""
    t = trainer
    module, device = t.train_module, t.device
    n = len(batches)
    local_bad = False
    loss_sum, correct, images = 0.0, 0, 0
    for i, (x, y) in enumerate(batches):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        hard = y
        soft = None
        if t.mixup is not None:
            x, soft = t.mixup(x, y)
        sync = contextlib.nullcontext() if i == n - 1 or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            with autocast_context(device, t.precision):
                teacher_labels = None
                if t.teacher is not None:
                    with torch.no_grad():
                        teacher_labels = t.teacher(x).argmax(dim=-1)
                outputs = module(x)
                loss = t.criterion(outputs, hard, soft, teacher_labels)
            value = float(loss.detach())
            if not math.isfinite(value):
                local_bad = True
            scaled = loss.float() / n
            if t.scaler is not None:
                scaled = t.scaler.scale(scaled)
            scaled.backward()  # also when non-finite: every rank must run the same collectives
        loss_sum += value
        correct += int((logits_of(outputs).detach().argmax(dim=-1) == hard).sum())
        images += int(y.shape[0])
    if t.scaler is not None:
        t.scaler.unscale_(t.optimizer)
    params = [p for p in t.model.parameters() if p.grad is not None]
    max_norm = t.cfg.optim.clip_grad or float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
    grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP2: a DTensor
    bad_grad = not math.isfinite(grad_norm) and t.scaler is None  # with a scaler, inf grads are its business
    skipped = t.all_reduce_any(local_bad or bad_grad)
    if skipped:
        t.optimizer.zero_grad(set_to_none=True)
        if t.scaler is not None:
            t.scaler.update()
    else:
        if t.scaler is not None:
            t.scaler.step(t.optimizer)
            t.scaler.update()
        else:
            t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
    return StepResult(loss=loss_sum / n if not local_bad else float("nan"), correct=correct, images=images,
                      grad_norm=grad_norm, skipped=skipped)
