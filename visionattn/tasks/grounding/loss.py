"""M-DETR's loss: match (:class:`.matcher.GroundingMatcher`), then, per decoder output, with ``num_boxes`` DETR's
normaliser (:func:`~visionattn.tasks.detection.loss.count_boxes`):

- ``token`` (soft token prediction): every query's log-softmax over the ``T + 1`` slots against its target
  distribution, ``−Σ_t target(t) log p(t)``: a matched query's target is uniform over its phrase's tokens, an
  unmatched one's is the "no object" slot ``T``; unmatched queries weigh ``eos_coef``; summed / ``num_boxes``.
- ``align`` (contrastive alignment, M-DETR eq. 2-3, temperature τ): with ``s_ij = o_i · t_j / τ`` over the
  normalised query embeddings ``o`` and text-token embeddings ``t`` (text padding excluded),
  ``l_o = Σ_i 1/|T_i⁺| Σ_{j∈T_i⁺} −log(exp s_ij / Σ_k exp s_ik)`` over the matched queries (T_i⁺: its phrase's
  tokens) and ``l_t = Σ_j 1/|O_j⁺| Σ_{i∈O_j⁺} −log(exp s_ij / Σ_k exp s_kj)`` over the tokens with positives
  (O_j⁺: the matched queries whose phrase holds token j), ``(l_o + l_t) / 2 / num_boxes``;
- ``bbox``, ``giou``: DETR's L1 and 1 − GIoU of the matched boxes (:meth:`SetCriterion.loss_boxes`).

Every earlier decoder layer is matched and scored the same way: ``aux_token``, ``aux_align``, ``aux_bbox``,
``aux_giou``. Each term is multiplied by its weight before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...comm import LOCAL, DistInfo
from ..detection.loss import SetCriterion, count_boxes
from .matcher import GroundingMatcher, normalized_positive
from .model import MDetrOutput

__all__ = ["GroundingWeights", "GroundingCriterion", "soft_token_loss", "contrastive_align_loss"]


@dataclass(frozen=True)
class GroundingWeights:
    """M-DETR's defaults: token 1, align 1, bbox 5, giou 2; eos_coef 0.1; temperature 0.07."""

    token: float = 1.0
    align: float = 1.0
    bbox: float = 5.0
    giou: float = 2.0
    eos_coef: float = 0.1
    temperature: float = 0.07


def _matched(indices) -> tuple[Tensor, Tensor]:
    batch = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(indices)])
    return batch, torch.cat([q for q, _ in indices])


def _matched_positive(targets, indices) -> Tensor:
    """Bool ``(M, L)``: the positive map of each matched target, in the order of :func:`_matched`."""
    L = max(t["positive"].shape[1] for t in targets)
    rows = []
    for t, (_, j) in zip(targets, indices, strict=True):
        p = t["positive"][j.to(t["positive"].device)]
        rows.append(torch.nn.functional.pad(p, (0, L - p.shape[1])))
    return torch.cat(rows) if rows else torch.zeros(0, L, dtype=torch.bool)


def soft_token_loss(logits: Tensor, targets, indices, num_boxes, eos_coef: float) -> Tensor:
    """The ``token`` term (module docstring): ``logits`` ``(B, N, T + 1)``."""
    logp = logits.float().log_softmax(-1)  # (B, N, T + 1)
    target = torch.zeros_like(logp)
    target[:, :, -1] = 1.0
    weight = torch.full(logp.shape[:2], eos_coef, device=logp.device)
    batch, query = _matched(indices)
    batch, query = batch.to(logp.device), query.to(logp.device)
    if len(batch):
        target[batch, query] = normalized_positive(_matched_positive(targets, indices).to(logp.device),
                                                   logp.shape[-1])
        weight[batch, query] = 1.0
    return (-(logp * target).sum(-1) * weight).sum() / num_boxes


def contrastive_align_loss(queries: Tensor, tokens: Tensor, text_padding: Tensor, targets, indices, num_boxes,
                           temperature: float) -> Tensor:
    """The ``align`` term (module docstring): ``queries`` ``(B, N, c)``, ``tokens`` ``(B, L, c)`` normalised,
    ``text_padding`` ``(B, L)`` bool."""
    B, N, _ = queries.shape
    L = tokens.shape[1]
    logits = queries.float() @ tokens.float().transpose(1, 2) / temperature  # (B, N, L)
    positive = torch.zeros(B, N, L, dtype=torch.bool, device=logits.device)
    batch, query = _matched(indices)
    if len(batch):
        positive[batch.to(logits.device), query.to(logits.device)] = _matched_positive(targets, indices)[:, :L].to(
            logits.device)
    pos_sum = logits.masked_fill(~positive, 0.0)  # (B, N, L)
    # queries → tokens: log-softmax over the real tokens of each query's row
    row_lse = logits.masked_fill(text_padding[:, None, :], float("-inf")).logsumexp(2)  # (B, N)
    n_row = positive.sum(2)
    l_o = ((row_lse * n_row - pos_sum.sum(2)) / n_row.clamp(min=1))[n_row > 0].sum()
    # tokens → queries: log-softmax over every query of each token's column
    col_lse = logits.logsumexp(1)  # (B, L)
    n_col = positive.sum(1)
    l_t = ((col_lse * n_col - pos_sum.sum(1)) / n_col.clamp(min=1))[n_col > 0].sum()
    return (l_o + l_t) / 2 / num_boxes


class GroundingCriterion:
    """``criterion(output, targets, info)`` → ``(weighted terms, stats)``. ``targets``: per image ``"boxes"``
    ``(M, 4)`` normalised cxcywh, ``"labels"`` ``(M,)`` zeros and ``"positive"`` ``(M, L)`` bool over the batch's
    token positions. stats: ``token_acc``: matched queries whose most probable slot is one of their tokens."""

    def __init__(self, matcher: GroundingMatcher | None = None, weights: GroundingWeights | None = None,
                 aux: bool = True):
        self.matcher = matcher or GroundingMatcher()
        self.weights = weights or GroundingWeights()
        self.aux = aux
        self._boxes = SetCriterion(1, self.matcher)  # DETR's L1 + GIoU of matched boxes

    def layer_terms(self, logits, boxes, queries, output: MDetrOutput, targets, num_boxes) -> tuple[dict, Tensor]:
        w = self.weights
        indices = self.matcher(logits, boxes, targets)
        token = soft_token_loss(logits, targets, indices, num_boxes, w.eos_coef)
        align = contrastive_align_loss(queries, output.tokens, output.text_padding, targets, indices, num_boxes,
                                       w.temperature)
        l1, giou = self._boxes.loss_boxes(boxes, targets, indices, num_boxes)
        batch, query = _matched(indices)
        best = logits.detach()[batch.to(logits.device), query.to(logits.device)].argmax(-1)  # (M,)
        pos = _matched_positive(targets, indices).to(logits.device)
        correct = pos.gather(1, best.clamp(max=pos.shape[1] - 1)[:, None])[:, 0] & (best < pos.shape[1])
        terms = {"token": w.token * token, "align": w.align * align, "bbox": w.bbox * l1, "giou": w.giou * giou}
        return terms, correct.sum()

    def __call__(self, output: MDetrOutput, targets: Sequence[dict], info: DistInfo = LOCAL,
                 ) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
        num_boxes = count_boxes(targets, output.logits.device, info)
        terms, correct = self.layer_terms(output.logits, output.boxes, output.queries, output, targets, num_boxes)
        matched = torch.tensor(float(sum(len(t["boxes"]) for t in targets)), device=output.logits.device)
        if self.aux and output.aux:
            for logits, boxes, queries in output.aux:
                layer, _ = self.layer_terms(logits, boxes, queries, output, targets, num_boxes)
                for k, v in layer.items():
                    terms[f"aux_{k}"] = terms.get(f"aux_{k}", 0.0) + v
        return terms, {"token_acc": (correct, matched)}
