"""DETR's set loss (``SetCriterion``): match, then score the matched pairs and the unmatched queries.

For a batch with ``num_boxes`` targets in all (summed over every rank, divided by the world size, at least 1, as
DETR does, so that DDP's gradient average equals the one-process loss), per decoder output:

- ``ce``: cross-entropy of every query's K + 1 logits against its matched class or "no object" (index K), the
  no-object class weighted ``eos_coef`` (weighted mean over queries, ``F.cross_entropy``'s ``weight``);
- ``bbox``: L1 between matched normalised cxcywh boxes, summed, divided by ``num_boxes``;
- ``giou``: ``1 − GIoU`` of the matched boxes (``torchvision.ops.generalized_box_iou``), summed / ``num_boxes``;
- with the panoptic head, on the last layer only: ``mask``, the sigmoid focal loss (``torchvision.ops``, α 0.25,
  γ 2, mean over pixels, summed over masks / ``num_boxes``) and ``dice``, ``1 − (2|p·t| + 1) / (|p| + |t| + 1)``
  summed / ``num_boxes``, between the matched mask logits upsampled (bilinear) to the padded image size and the
  target masks padded to it.

Every decoder layer but the last is matched and scored the same way (the auxiliary losses); their terms are summed
into ``aux_ce``, ``aux_bbox``, ``aux_giou``. Each term is multiplied by its weight before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from ...comm import LOCAL, DistInfo, all_reduce_sum
from .matcher import HungarianMatcher
from .model import DetrOutput

__all__ = ["LossWeights", "SetCriterion", "dice_loss", "count_boxes"]


@dataclass(frozen=True)
class LossWeights:
    """DETR's weights: ce 1, bbox (L1) 5, giou 2, mask (focal) 1, dice 1; eos_coef 0.1 weighs "no object" in ce."""

    ce: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 1.0
    dice: float = 1.0
    eos_coef: float = 0.1


def dice_loss(logits: Tensor, targets: Tensor, num_boxes: Tensor | float) -> Tensor:
    """``logits``, ``targets`` ``(M, P)`` (P pixels) → ``Σ_m 1 − (2 Σ σ(x)·t + 1) / (Σ σ(x) + Σ t + 1)`` / num_boxes."""
    p = logits.sigmoid()
    numerator = 2 * (p * targets).sum(1)
    denominator = p.sum(1) + targets.sum(1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_boxes


def count_boxes(targets: Sequence[dict], device: torch.device, info: DistInfo = LOCAL) -> Tensor:
    """DETR's normaliser: targets in the batch, summed over ranks, divided by the world size, clamped to >= 1."""
    n = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
    return (all_reduce_sum(n, info) / info.world_size).clamp(min=1.0)


class SetCriterion:
    """``criterion(output, targets, image_size, info)`` → ``(terms, stats)``: weighted loss terms (their sum is the
    loss) and ``{"class_acc": (correct, matched)}`` for logging.

    ``targets``: per image, ``"labels"`` ``(M,)`` int64 in ``[0, num_classes)``, ``"boxes"`` ``(M, 4)`` normalised
    cxcywh, and with masks ``"masks"`` ``(M, H_b, W_b)`` bool at the image's size. ``image_size``: the padded batch
    ``(H, W)`` (the mask targets are padded to it)."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None, weights: LossWeights | None = None,
                 aux: bool = True, masks: bool = False):
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = weights or LossWeights()
        self.aux, self.masks = aux, masks

    def _class_weight(self, device) -> Tensor:
        w = torch.ones(self.num_classes + 1, device=device)
        w[-1] = self.weights.eos_coef
        return w

    def loss_labels(self, logits: Tensor, targets, indices) -> tuple[Tensor, Tensor, Tensor]:
        """``(ce, correct, matched)``: the cross-entropy and the matched queries whose arg-max class is right."""
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        batch, query, matched = self._matched(indices, targets, logits.device)
        target_classes[batch, query] = matched
        ce = F.cross_entropy(logits.float().transpose(1, 2), target_classes, self._class_weight(logits.device))
        correct = (logits.detach()[batch, query].argmax(-1) == matched).sum()
        return ce, correct, torch.tensor(len(matched), device=logits.device)

    def loss_boxes(self, boxes: Tensor, targets, indices, num_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """``(l1, giou)`` summed over matched pairs, divided by ``num_boxes``."""
        batch, query, _ = self._matched(indices, targets, boxes.device)
        src = boxes[batch, query].float()  # (M, 4)
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices, strict=True)]).float().to(src.device)
        l1 = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")))
        return l1, (1 - giou).sum() / num_boxes

    def loss_masks(self, masks: Tensor, targets, indices, num_boxes: Tensor, image_size) -> tuple[Tensor, Tensor]:
        """``(focal, dice)`` of the matched masks at the padded image size."""
        batch, query, _ = self._matched(indices, targets, masks.device)
        H, W = image_size
        tgt = []
        for t, (_, j) in zip(targets, indices, strict=True):
            m = t["masks"][j].to(masks.device)  # (m, h_b, w_b)
            tgt.append(F.pad(m, (0, W - m.shape[-1], 0, H - m.shape[-2])))  # (m, H, W)
        target = torch.cat(tgt).float() if tgt else masks.new_zeros(0, H, W)
        src = F.interpolate(masks[batch, query][:, None].float(), size=(H, W), mode="bilinear",
                            align_corners=False)[:, 0]  # (M, H, W)
        src, target = src.flatten(1), target.flatten(1)
        focal = sigmoid_focal_loss(src, target, alpha=0.25, gamma=2.0, reduction="none").mean(1).sum() / num_boxes
        return focal, dice_loss(src, target, num_boxes)

    @staticmethod
    def _matched(indices, targets, device) -> tuple[Tensor, Tensor, Tensor]:
        batch = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)]).to(device)
        query = torch.cat([q for q, _ in indices]).to(device)
        labels = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices, strict=True)])
        return batch, query, labels.to(device)

    def __call__(self, output: DetrOutput, targets: Sequence[dict], image_size=None,
                 info: DistInfo = LOCAL) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
        w = self.weights
        num_boxes = count_boxes(targets, output.logits.device, info)
        indices = self.matcher(output.logits, output.boxes, targets)
        ce, correct, matched = self.loss_labels(output.logits, targets, indices)
        l1, giou = self.loss_boxes(output.boxes, targets, indices, num_boxes)
        terms = {"ce": w.ce * ce, "bbox": w.bbox * l1, "giou": w.giou * giou}
        if self.masks:
            if output.masks is None:
                raise ValueError("SetCriterion(masks=True): the model gave no masks (build it with masks=True)")
            if image_size is None:
                raise ValueError("SetCriterion(masks=True): image_size (the padded batch size) is required")
            focal, dice = self.loss_masks(output.masks, targets, indices, num_boxes, image_size)
            terms.update(mask=w.mask * focal, dice=w.dice * dice)
        if self.aux and output.aux:
            aux = {"aux_ce": 0.0, "aux_bbox": 0.0, "aux_giou": 0.0}
            for logits, boxes in output.aux:
                layer_indices = self.matcher(logits, boxes, targets)
                a_ce, _, _ = self.loss_labels(logits, targets, layer_indices)
                a_l1, a_giou = self.loss_boxes(boxes, targets, layer_indices, num_boxes)
                aux["aux_ce"] = aux["aux_ce"] + w.ce * a_ce
                aux["aux_bbox"] = aux["aux_bbox"] + w.bbox * a_l1
                aux["aux_giou"] = aux["aux_giou"] + w.giou * a_giou
            terms.update(aux)
        return terms, {"class_acc": (correct, matched)}
