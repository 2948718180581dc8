"""The DeiT losses, and the module that gives DDP the distillation forward.

- base: cross-entropy with label smoothing on hard labels, or soft-target cross-entropy on the Mixup/CutMix targets
  (which already carry the smoothing);
- hard distillation: ``(1 - w) * base(cls_logits, y) + w * CE(dist_logits, argmax teacher(x))``, the teacher seeing
  the same (mixed) images, without label smoothing (DeiT's ``hard`` distillation, w = 0.5).
"""

from __future__ import annotations

import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn

__all__ = ["DeiTLoss", "DistillationModule", "logits_of"]


class DistillationModule(nn.Module):
    """``forward(x)`` → ``(cls_logits, dist_logits)`` of a distilled model (its ``forward_distill``), so that DDP sees
    every parameter used through its own ``forward``. Parameter names are the model's under ``model.``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        has_token = callable(getattr(model, "forward_distill", None)) and getattr(
            getattr(model, "spec", None), "distilled", True) is not False
        if not has_token:
            preset = getattr(getattr(model, "preset", None), "name", type(model).__name__)
            raise ValueError(
                f"hard distillation trains the distillation token, so the student needs forward_distill (a "
                f"distilled DeiT such as deit_tiny_distilled_test or a spec with distilled=True); got {preset}"
            )
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.forward_distill(x)


def logits_of(outputs) -> Tensor:
    """The prediction logits of a forward: the mean head of a distilled model's ``(cls, dist)`` pair."""
    return (outputs[0] + outputs[1]) / 2 if isinstance(outputs, tuple) else outputs


class DeiTLoss(nn.Module):
    """``loss(outputs, targets, soft_targets, teacher_labels)`` → ``(total, terms)`` (see the module docstring);
    ``terms`` names the weighted parts of a distillation loss (empty otherwise)."""

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
                teacher_labels: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        if teacher_labels is None:
            return self.base(logits_of(outputs), targets, soft_targets), {}
        cls_logits, dist_logits = outputs
        w = self.distill_weight
        terms = {"cls": (1 - w) * self.base(cls_logits, targets, soft_targets),
                 "distill": w * F.cross_entropy(dist_logits, teacher_labels)}
        return terms["cls"] + terms["distill"], terms
