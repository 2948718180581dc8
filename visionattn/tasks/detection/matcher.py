"""Hungarian matching of predictions to ground-truth objects (DETR's ``HungarianMatcher``).

Per image, the cost of giving target ``j`` to query ``i`` is::

    class_cost · (−p_i(c_j))  +  bbox_cost · ‖b_i − b̂_j‖₁  +  giou_cost · (−GIoU(b_i, b̂_j))

with ``p_i`` the softmax over the K + 1 classes, boxes as normalised ``(cx, cy, w, h)`` for the L1 term and as
``(x1, y1, x2, y2)`` for the generalised IoU (``torchvision.ops.generalized_box_iou``). The minimum-cost one-to-one
assignment is ``scipy.optimize.linear_sum_assignment``; queries left over are "no object".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher", "match_cost"]

_HUGE = 1e8  # stands in for a non-finite cost: the assignment still runs, and the loss itself stays non-finite


def match_cost(logits: Tensor, boxes: Tensor, labels: Tensor, target_boxes: Tensor, class_cost: float = 1.0,
               bbox_cost: float = 5.0, giou_cost: float = 2.0) -> Tensor:
    """The ``(N, M)`` cost of one image: ``logits`` ``(N, K + 1)``, ``boxes`` ``(N, 4)`` cxcywh, ``labels``
    ``(M,)`` int64 in ``[0, K)``, ``target_boxes`` ``(M, 4)`` cxcywh."""
    prob = logits.float().softmax(-1)  # (N, K + 1)
    cost_class = -prob[:, labels]  # (N, M)
    cost_bbox = torch.cdist(boxes.float(), target_boxes.float(), p=1)  # (N, M)
    cost_giou = -generalized_box_iou(box_convert(boxes.float(), "cxcywh", "xyxy"),
                                     box_convert(target_boxes.float(), "cxcywh", "xyxy"))  # (N, M)
    return class_cost * cost_class + bbox_cost * cost_bbox + giou_cost * cost_giou


class HungarianMatcher:
    """``matcher(logits (B, N, K + 1), boxes (B, N, 4), targets)`` → per image ``(query indices, target indices)``,
    two int64 tensors of length ``min(N, M_b)`` (on the CPU), sorted by query. ``targets``: per image a dict with
    ``"labels"`` ``(M_b,)`` and ``"boxes"`` ``(M_b, 4)`` normalised cxcywh (an image with no object matches none)."""

    def __init__(self, class_cost: float = 1.0, bbox_cost: float = 5.0, giou_cost: float = 2.0):
        if min(class_cost, bbox_cost, giou_cost) < 0 or class_cost == bbox_cost == giou_cost == 0:
            raise ValueError(f"HungarianMatcher: costs must be >= 0 and not all 0, got class {class_cost}, bbox "
                             f"{bbox_cost}, giou {giou_cost}")
        self.class_cost, self.bbox_cost, self.giou_cost = class_cost, bbox_cost, giou_cost

    @torch.no_grad()
    def __call__(self, logits: Tensor, boxes: Tensor, targets: Sequence[dict]) -> list[tuple[Tensor, Tensor]]:
        if len(targets) != logits.shape[0]:
            raise ValueError(f"HungarianMatcher: {logits.shape[0]} images of predictions, {len(targets)} targets")
        out = []
        for b, target in enumerate(targets):
            labels, tboxes = target["labels"], target["boxes"]
            if len(labels) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                out.append((empty, empty))
                continue
            cost = match_cost(logits[b], boxes[b], labels, tboxes, self.class_cost, self.bbox_cost, self.giou_cost)
            cost = np.nan_to_num(cost.cpu().double().numpy(), nan=_HUGE, posinf=_HUGE, neginf=-_HUGE)
            rows, cols = linear_sum_assignment(cost)
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out
