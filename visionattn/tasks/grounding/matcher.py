"""M-DETR's Hungarian matcher: DETR's box costs plus a soft-token cost in place of the class cost.

Per image, the cost of giving target box ``j`` to query ``i``::

    token_cost · (−Σ_t p_i(t) · π_j(t))  +  bbox_cost · ‖b_i − b̂_j‖₁  +  giou_cost · (−GIoU(b_i, b̂_j))

with ``p_i`` the softmax over the ``T + 1`` token slots of query ``i`` and ``π_j`` the target's positive map
normalised to sum 1 over its phrase's tokens (M-DETR's ``HungarianMatcher``). The box terms are DETR's
:func:`~visionattn.tasks.detection.matcher.match_cost` (its class term switched off); the assignment is
``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..detection.matcher import match_cost

__all__ = ["GroundingMatcher", "grounding_cost", "normalized_positive"]

_HUGE = 1e8


def normalized_positive(positive: Tensor, slots: int) -> Tensor:
    """Bool / float ``(M, L)`` positive map → float ``(M, slots)``, each row summing to 1 over its tokens (zeros
    past ``L``; M-DETR's ``positive_map / (sum + 1e-6)``)."""
    out = positive.new_zeros(positive.shape[0], slots, dtype=torch.float32)
    out[:, : positive.shape[1]] = positive.float()
    return out / (out.sum(-1, keepdim=True) + 1e-6)


def grounding_cost(logits: Tensor, boxes: Tensor, positive: Tensor, target_boxes: Tensor, token_cost: float = 1.0,
                   bbox_cost: float = 5.0, giou_cost: float = 2.0) -> Tensor:
    """The ``(N, M)`` cost of one image: ``logits`` ``(N, T + 1)``, ``boxes`` ``(N, 4)`` cxcywh, ``positive``
    ``(M, L)`` bool (L <= T), ``target_boxes`` ``(M, 4)`` cxcywh."""
    prob = logits.float().softmax(-1)  # (N, T + 1)
    cost_token = -(prob @ normalized_positive(positive, logits.shape[-1]).T)  # (N, M)
    zeros = torch.zeros(len(target_boxes), dtype=torch.int64, device=boxes.device)
    box = match_cost(boxes.new_zeros(boxes.shape[0], 1), boxes, zeros, target_boxes, 0.0, bbox_cost, giou_cost)
    return token_cost * cost_token + box


class GroundingMatcher:
    """``matcher(logits (B, N, T + 1), boxes (B, N, 4), targets)`` → per image ``(query indices, target indices)``
    (int64, CPU). ``targets``: per image ``"boxes"`` ``(M, 4)`` normalised cxcywh and ``"positive"`` ``(M, L)``
    bool."""

    def __init__(self, token_cost: float = 1.0, bbox_cost: float = 5.0, giou_cost: float = 2.0):
        if min(token_cost, bbox_cost, giou_cost) < 0 or token_cost == bbox_cost == giou_cost == 0:
            raise ValueError(f"GroundingMatcher: costs must be >= 0 and not all 0, got token {token_cost}, bbox "
                             f"{bbox_cost}, giou {giou_cost}")
        self.token_cost, self.bbox_cost, self.giou_cost = token_cost, bbox_cost, giou_cost

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, targets: Sequence[dict]) -> list[tuple[Tensor, Tensor]]:
        if len(targets) != logits.shape[0]:
            raise ValueError(f"GroundingMatcher: {logits.shape[0]} images of predictions, {len(targets)} targets")
        out = []
        for b, t in enumerate(targets):
            if len(t["boxes"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                out.append((empty, empty))
                continue
            cost = grounding_cost(logits[b], boxes[b], t["positive"], t["boxes"], self.token_cost, self.bbox_cost,
                                  self.giou_cost)
            cost = np.nan_to_num(cost.cpu().double().numpy(), nan=_HUGE, posinf=_HUGE, neginf=-_HUGE)
            rows, cols = linear_sum_assignment(cost)
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out
