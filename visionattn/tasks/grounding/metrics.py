"""Phrase grounding Recall@k at IoU >= 0.5, per phrase type, and the text-blind baseline.

For each phrase of each image the queries are ranked by a phrase score: ``score="token"``, the probability mass they
put on the phrase's tokens (:func:`phrase_scores`, M-DETR's soft token prediction), or ``score="align"``, the
contrastive alignment (:func:`align_scores`: for each phrase token, the softmax over queries of their similarity;
averaged over the phrase's tokens); the other score's Recall@1/5 is reported too (``<other>_recall1``). The phrase
is recalled at k when one of the top-k boxes has IoU >= ``iou`` with one of the phrase's ground-truth boxes
(M-DETR's "any box" protocol for Flickr30k; a two-box phrase counts as found when either box is). The text-blind
baseline ranks the same boxes by ``1 − p(no object)``, the highest-scoring boxes regardless of which phrase is asked
about; the gap between the two shows that the text is used.

Reported: ``recall1``, ``recall5``, ``baseline_recall1``, ``baseline_recall5``, ``phrases`` and per phrase type
``recall1_<type>`` / ``recall5_<type>`` / ``baseline_recall1_<type>`` / ``phrases_<type>``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation

SCORES = ("token", "align")

__all__ = ["SCORES", "GroundingMetric", "align_scores", "phrase_scores", "recall_hits", "format_grounding"]


def phrase_scores(logits: Tensor, tokens: Tensor) -> Tensor:
    """``logits`` ``(N, T + 1)``, ``tokens`` bool ``(L,)`` (the phrase's positions, L <= T) → ``(N,)`` the
    probability each query puts on the phrase's tokens."""
    prob = logits.float().softmax(-1)[:, : tokens.shape[0]]  # (N, L)
    return (prob * tokens.float()).sum(-1)


def align_scores(queries: Tensor, tokens: Tensor, phrase: Tensor, temperature: float = 0.07) -> Tensor:
    """The contrastive-alignment score of each query for a phrase: ``queries`` ``(N, c)``, ``tokens`` ``(L, c)``
    normalised, ``phrase`` bool ``(L,)`` → ``(N,)``, the mean over the phrase's tokens of the softmax over queries
    of ``o_i · t_j / τ`` (the token → query direction of the alignment loss, trained for every phrase token)."""
    prob = (queries.float() @ tokens.float().T / temperature).softmax(0)  # (N, L)
    return (prob * phrase.float()).sum(-1) / phrase.float().sum().clamp(min=1)


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

    def __init__(self, kinds: list[str], iou: float = 0.5, score: str = "token", temperature: float = 0.07):
        if score not in SCORES:
            raise ValueError(f"GroundingMetric: score expected one of {SCORES}, got {score!r}")
        self.kinds, self.iou, self.score, self.temperature = list(kinds), float(iou), score, float(temperature)
        self.counts = torch.zeros(len(self.kinds), 7, dtype=torch.float64)  # n, r1, r5, b1, b5, a1, a5
        self.examples: list[dict] = []

    def _row(self, kind: str) -> int:
        if kind not in self.kinds:
            self.kinds.append(kind)
            self.counts = torch.cat([self.counts, torch.zeros(1, 7, dtype=torch.float64)])
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
                align = [False, False]
                if "queries" in outputs:
                    phrase = p["tokens"].to(boxes.device)[: outputs["tokens"].shape[1]]
                    align = recall_hits(align_scores(outputs["queries"][b], outputs["tokens"][b], phrase,
                                                     self.temperature), boxes, gt, iou=self.iou)
                elif self.score == "align":
                    raise ValueError("GroundingMetric(score='align'): the outputs hold no 'queries' / 'tokens'")
                token, align = (hits, align) if self.score == "token" else (align, hits)
                self.counts[self._row(p["kind"])] += torch.tensor([1.0, *token, *base, *align], dtype=torch.float64)

    def reduce(self, info: DistInfo) -> None:
        # every rank must know every kind: the kinds are fixed by the task's data meta, so rows line up
        self.counts = all_reduce_sum(self.counts, info)

    def compute(self) -> Evaluation:
        c = self.counts
        total = c.sum(0)
        n = max(total[0].item(), 1.0)
        metrics = {"recall1": total[1].item() / n, "recall5": total[2].item() / n,
                   "baseline_recall1": total[3].item() / n, "baseline_recall5": total[4].item() / n,
                   "other_recall1": total[5].item() / n, "other_recall5": total[6].item() / n,
                   "phrases": total[0].item()}
        per_kind = {}
        for kind, row in zip(self.kinds, c, strict=True):
            if row[0] > 0:
                k = row[0].item()
                per_kind[kind] = {"phrases": int(k), "recall1": row[1].item() / k, "recall5": row[2].item() / k,
                                  "baseline_recall1": row[3].item() / k, "baseline_recall5": row[4].item() / k,
                                  "other_recall1": row[5].item() / k}
                metrics[f"recall1_{kind}"] = per_kind[kind]["recall1"]
                metrics[f"recall5_{kind}"] = per_kind[kind]["recall5"]
                metrics[f"baseline_recall1_{kind}"] = per_kind[kind]["baseline_recall1"]
                metrics[f"phrases_{kind}"] = float(k)
        other = "align" if self.score == "token" else "token"
        metrics[f"{other}_recall1"] = metrics.pop("other_recall1")
        metrics[f"{other}_recall5"] = metrics.pop("other_recall5")
        for row in per_kind.values():
            row[f"{other}_recall1"] = row.pop("other_recall1")
        return Evaluation(metrics, {"per_kind": per_kind, "score": self.score, "other": other})


def format_grounding(evaluation: Evaluation) -> str:
    m, d = evaluation.metrics, evaluation.details or {}
    score, other = d.get("score", "token"), d.get("other", "align")
    lines = [f"phrase grounding (IoU >= 0.5, any box; boxes ranked by {score} scores): Recall@1 {m['recall1']:.3f}  "
             f"Recall@5 {m['recall5']:.3f}  "
             f"text-blind baseline Recall@1 {m['baseline_recall1']:.3f}  Recall@5 {m['baseline_recall5']:.3f}  "
             f"{other}-scored Recall@1 {m[other + '_recall1']:.3f}  ({int(m['phrases'])} phrases)",
             f"{'type':<12}{'phrases':>8}{'R@1':>8}{'R@5':>8}{'blind R@1':>11}{other + ' R@1':>11}"]
    for kind, row in sorted((evaluation.details or {}).get("per_kind", {}).items()):
        lines.append(f"{kind:<12}{row['phrases']:>8}{row['recall1']:>8.3f}{row['recall5']:>8.3f}"
                     f"{row['baseline_recall1']:>11.3f}{row[other + '_recall1']:>11.3f}")
    return "\n".join(lines)
