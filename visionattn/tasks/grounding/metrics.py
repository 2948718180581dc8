"""Phrase grounding Recall@k at IoU >= 0.5, per phrase type, and the text-blind baseline.

For each phrase of each image the queries are ranked by the probability mass they put on the phrase's tokens
(:func:`phrase_scores`); the phrase is recalled at k when one of the top-k boxes has IoU >= ``iou`` with one of the
phrase's ground-truth boxes (M-DETR's "any box" protocol for Flickr30k; a two-box phrase counts as found when
either box is). The text-blind baseline ranks the same boxes by ``1 − p(no object)``, the highest-scoring boxes
regardless of which phrase is asked about; the gap between the two shows that the text is used.

Reported: ``recall1``, ``recall5``, ``baseline_recall1``, ``baseline_recall5``, ``phrases`` and per phrase type
``recall1_<type>`` / ``recall5_<type>`` / ``baseline_recall1_<type>`` / ``phrases_<type>``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation

__all__ = ["GroundingMetric", "phrase_scores", "recall_hits", "format_grounding"]


def phrase_scores(logits: Tensor, tokens: Tensor) -> Tensor:
    """``logits`` ``(N, T + 1)``, ``tokens`` bool ``(L,)`` (the phrase's positions, L <= T) → ``(N,)`` the
    probability each query puts on the phrase's tokens."""
    prob = logits.float().softmax(-1)[:, : tokens.shape[0]]  # (N, L)
    return (prob * tokens.float()).sum(-1)


def recall_hits(scores: Tensor, boxes: Tensor, gt: Tensor, ks=(1, 5), iou: float = 0.5) -> list[bool]:
    """Per k: is one of the ``k`` highest-scoring ``boxes`` ``(N, 4)`` xyxy within IoU >= ``iou`` of a ``gt``
    ``(M, 4)`` xyxy box?"""
    order = scores.argsort(descending=True)
    ious = box_iou(boxes[order].float(), gt.float()).amax(1) >= iou  # (N,) in rank order
    return [bool(ious[:k].any()) for k in ks]


class GroundingMetric:
    """Accumulates (phrases, hits@1, hits@5, baseline hits@1, hits@5) per phrase type. ``update(outputs, batch)``:
    outputs ``{"logits" (B, N, T + 1), "boxes" (B, N, 4) cxcywh normalised}``; ``batch["target"][b]`` holds
    ``"size"`` ``(h, w)``, ``"orig_boxes"`` xyxy pixels and ``"phrases"`` (``tokens`` bool ``(L,)``, ``boxes``,
    ``kind``)."""

    def __init__(self, kinds: list[str], iou: float = 0.5):
        self.kinds, self.iou = list(kinds), float(iou)
        self.counts = torch.zeros(len(self.kinds), 5, dtype=torch.float64)  # n, r1, r5, b1, b5
        self.examples: list[dict] = []

    def _row(self, kind: str) -> int:
        if kind not in self.kinds:
            self.kinds.append(kind)
            self.counts = torch.cat([self.counts, torch.zeros(1, 5, dtype=torch.float64)])
        return self.kinds.index(kind)

    def update(self, outputs: dict, batch: dict) -> None:
        for b, target in enumerate(batch["target"]):
            h, w = (int(v) for v in target["size"])
            boxes = box_convert(outputs["boxes"][b].float(), "cxcywh", "xyxy") * torch.tensor(
                [w, h, w, h], dtype=torch.float32, device=outputs["boxes"].device)
            blind = 1 - outputs["logits"][b].float().softmax(-1)[:, -1]
            for p in target["phrases"]:
                gt = target["orig_boxes"][p["boxes"]].to(boxes.device)
                hits = recall_hits(phrase_scores(outputs["logits"][b], p["tokens"].to(boxes.device)), boxes, gt,
                                   iou=self.iou)
                base = recall_hits(blind, boxes, gt, iou=self.iou)
                self.counts[self._row(p["kind"])] += torch.tensor([1.0, *hits, *base], dtype=torch.float64)

    def reduce(self, info: DistInfo) -> None:
        # every rank must know every kind: the kinds are fixed by the task's data meta, so rows line up
        self.counts = all_reduce_sum(self.counts, info)

    def compute(self) -> Evaluation:
        c = self.counts
        total = c.sum(0)
        n = max(total[0].item(), 1.0)
        metrics = {"recall1": total[1].item() / n, "recall5": total[2].item() / n,
                   "baseline_recall1": total[3].item() / n, "baseline_recall5": total[4].item() / n,
                   "phrases": total[0].item()}
        per_kind = {}
        for kind, row in zip(self.kinds, c, strict=True):
            if row[0] > 0:
                k = row[0].item()
                per_kind[kind] = {"phrases": int(k), "recall1": row[1].item() / k, "recall5": row[2].item() / k,
                                  "baseline_recall1": row[3].item() / k, "baseline_recall5": row[4].item() / k}
                metrics[f"recall1_{kind}"] = per_kind[kind]["recall1"]
                metrics[f"recall5_{kind}"] = per_kind[kind]["recall5"]
                metrics[f"baseline_recall1_{kind}"] = per_kind[kind]["baseline_recall1"]
                metrics[f"phrases_{kind}"] = float(k)
        return Evaluation(metrics, {"per_kind": per_kind})


def format_grounding(evaluation: Evaluation) -> str:
    m = evaluation.metrics
    lines = [f"phrase grounding (IoU >= 0.5, any box): Recall@1 {m['recall1']:.3f}  Recall@5 {m['recall5']:.3f}  "
             f"text-blind baseline Recall@1 {m['baseline_recall1']:.3f}  Recall@5 {m['baseline_recall5']:.3f}  "
             f"({int(m['phrases'])} phrases)",
             f"{'type':<12}{'phrases':>8}{'R@1':>8}{'R@5':>8}{'blind R@1':>11}"]
    for kind, row in sorted((evaluation.details or {}).get("per_kind", {}).items()):
        lines.append(f"{kind:<12}{row['phrases']:>8}{row['recall1']:>8.3f}{row['recall5']:>8.3f}"
                     f"{row['baseline_recall1']:>11.3f}")
    return "\n".join(lines)
