"""SETR's loss: pixel-wise cross-entropy with an ignore index and optional class weights, plus the auxiliary heads'.

``loss = CE(logits, target) + aux_weight * sum_i CE(aux_i, target)``, each CE the weighted mean over the pixels
whose label is not ``ignore_index``: ``sum_p w[y_p] * -log softmax(z_p)[y_p] / sum_p w[y_p]`` (PyTorch's
``cross_entropy`` with ``reduction="mean"``), except that a batch with no labelled pixel gives 0 instead of 0/0 (a
crop of only ignored pixels must not stop a run with a non-finite loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SegmentationLoss", "masked_cross_entropy"]


def masked_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None,
                         ignore_index: int = 255) -> Tensor:
    """Weighted mean cross-entropy over the labelled pixels (see the module docstring). ``logits`` ``(B, K, H, W)``
    (computed in float32), ``target`` ``(B, H, W)`` int64, ``weight`` ``(K,)`` or None."""
    if logits.shape[-2:] != target.shape[-2:] or logits.shape[0] != target.shape[0]:
        raise ValueError(f"cross-entropy: logits {tuple(logits.shape)} and labels {tuple(target.shape)} expected to "
                         f"share batch and (H, W)")
    logits = logits.float()
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    valid = target != ignore_index
    if weight is None:
        denom = valid.sum()
    else:
        denom = (weight[target.clamp(0, len(weight) - 1)] * valid).sum()
    return total / denom.clamp(min=1e-12).to(total.dtype)


class SegmentationLoss(nn.Module):
    """``loss(logits, aux, target)`` → ``(total, terms)`` with terms ``ce`` and ``aux`` (the weighted sum of the
    auxiliary heads' CE; absent without auxiliary heads). ``class_weights``: one per class or None."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_weights: Sequence[float] | None = None,
                 aux_weight: float = 0.4):
        super().__init__()
        if class_weights is not None:
            if len(class_weights) != num_classes or any(w < 0 for w in class_weights):
                raise ValueError(f"class_weights: expected {num_classes} non-negative numbers (one per class), got "
                                 f"{list(class_weights)}")
            self.register_buffer("weight", torch.tensor([float(w) for w in class_weights]), persistent=False)
        else:
            self.weight = None
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight

    def forward(self, logits: Tensor, aux: Sequence[Tensor], target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        weight = None if self.weight is None else self.weight.to(logits.device)
        terms = {"ce": masked_cross_entropy(logits, target, weight, self.ignore_index)}
        if aux:
            terms["aux"] = self.aux_weight * sum(masked_cross_entropy(a, target, weight, self.ignore_index)
                                                 for a in aux)
        return sum(terms.values()), terms
