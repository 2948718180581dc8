"""M-DETR's matcher cost and losses against a direct, loop-by-loop transcription of the paper's equations on seeded
random tensors (never zeros), and the Hungarian assignment against brute force over permutations."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

from visionattn.tasks.grounding.loss import (
    GroundingCriterion,
    GroundingWeights,
    contrastive_align_loss,
    soft_token_loss,
)
from visionattn.tasks.grounding.matcher import GroundingMatcher, grounding_cost
from visionattn.tasks.grounding.model import MDetrOutput


def _boxes(g, n):
    cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
    return torch.cat([cxcy, wh], 1)


def _case(seed=0, B=2, N=5, T=7, L=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, N, T + 1, generator=g) * 2
    boxes = _boxes(g, B * N).reshape(B, N, 4)
    targets = []
    for M in (2, 3)[:B]:
        positive = torch.zeros(M, L, dtype=torch.bool)
        for m in range(M):  # each box: a span of 1-3 tokens, never empty, last slot (END) never used
            start = int(torch.randint(0, L - 3, (1,), generator=g))
            positive[m, start:start + 1 + m % 3] = True
        targets.append({"boxes": _boxes(g, M), "labels": torch.zeros(M, dtype=torch.int64), "positive": positive})
    queries = torch.nn.functional.normalize(torch.randn(B, N, 4, generator=g), dim=-1)
    tokens = torch.nn.functional.normalize(torch.randn(B, L, 4, generator=g), dim=-1)
    text_padding = torch.zeros(B, L, dtype=torch.bool)
    text_padding[1, -1] = True  # one padded token in the second caption
    return logits, boxes, targets, queries, tokens, text_padding


def paper_cost(logits, boxes, positive, tboxes, wc=1.0, wb=5.0, wg=2.0):
    """C[i, j] = −wc Σ_t p_i(t) π_j(t) + wb ‖b_i − b_j‖₁ − wg GIoU(b_i, b_j), π_j uniform over j's tokens."""
    N, M = logits.shape[0], tboxes.shape[0]
    C = torch.zeros(N, M)
    for i in range(N):
        p = torch.exp(logits[i]) / torch.exp(logits[i]).sum()
        for j in range(M):
            toks = [t for t in range(positive.shape[1]) if positive[j, t]]
            mass = sum(p[t].item() for t in toks) / len(toks)
            l1 = sum(abs(boxes[i, k].item() - tboxes[j, k].item()) for k in range(4))
            giou = generalized_box_iou(box_convert(boxes[i:i + 1], "cxcywh", "xyxy"),
                                       box_convert(tboxes[j:j + 1], "cxcywh", "xyxy"))[0, 0].item()
            C[i, j] = -wc * mass + wb * l1 - wg * giou
    return C


def test_matcher_cost_equals_the_paper():
    logits, boxes, targets, *_ = _case()
    for b, t in enumerate(targets):
        got = grounding_cost(logits[b], boxes[b], t["positive"], t["boxes"])
        torch.testing.assert_close(got, paper_cost(logits[b], boxes[b], t["positive"], t["boxes"]), atol=1e-4,
                                   rtol=1e-4)


def test_matcher_assignment_is_the_minimum_over_permutations():
    logits, boxes, targets, *_ = _case(seed=3)
    matched = GroundingMatcher()(logits, boxes, targets)
    for b, ((rows, cols), t) in enumerate(zip(matched, targets, strict=True)):
        C = paper_cost(logits[b], boxes[b], t["positive"], t["boxes"])
        M = C.shape[1]
        best = min(sum(C[perm[j], j].item() for j in range(M)) for perm in itertools.permutations(range(C.shape[0]), M))
        assert sum(C[r, c].item() for r, c in zip(rows.tolist(), cols.tolist(), strict=True)) == pytest.approx(best,
                                                                                                             abs=1e-5)


def paper_soft_token(logits, targets, indices, num_boxes, eos):
    """Σ_i w_i · (−Σ_t y_i(t) log p_i(t)) / num_boxes; y_i uniform over the matched phrase's tokens (w 1) or the
    no-object slot (w eos)."""
    total = 0.0
    B, N, S = logits.shape
    for b in range(B):
        match = dict(zip(indices[b][0].tolist(), indices[b][1].tolist(), strict=True))
        for i in range(N):
            logp = logits[b, i] - math.log(sum(math.exp(v) for v in logits[b, i].tolist()))
            if i in match:
                toks = targets[b]["positive"][match[i]].nonzero().flatten().tolist()
                total += -sum(logp[t].item() for t in toks) / len(toks)
            else:
                total += -eos * logp[S - 1].item()
    return total / num_boxes


def paper_align(queries, tokens, padding, targets, indices, num_boxes, tau):
    """M-DETR eq. (2), (3): l_o over matched queries, l_t over tokens with positives; (l_o + l_t) / 2 / num_boxes."""
    l_o = l_t = 0.0
    for b in range(queries.shape[0]):
        real = [j for j in range(tokens.shape[1]) if not padding[b, j]]
        s = {(i, j): (queries[b, i] @ tokens[b, j]).item() / tau for i in range(queries.shape[1]) for j in real}
        pos = {}
        for i, m in zip(indices[b][0].tolist(), indices[b][1].tolist(), strict=True):
            pos[i] = [j for j in real if targets[b]["positive"][m, j]]
        for i, T_i in pos.items():
            denom = sum(math.exp(s[i, k]) for k in real)
            l_o += sum(-math.log(math.exp(s[i, j]) / denom) for j in T_i) / len(T_i)
        for j in real:
            O_j = [i for i, T_i in pos.items() if j in T_i]
            if O_j:
                denom = sum(math.exp(s[k, j]) for k in range(queries.shape[1]))
                l_t += sum(-math.log(math.exp(s[i, j]) / denom) for i in O_j) / len(O_j)
    return (l_o + l_t) / 2 / num_boxes


def test_soft_token_and_align_losses_equal_the_paper():
    logits, boxes, targets, queries, tokens, padding = _case(seed=1)
    indices = GroundingMatcher()(logits, boxes, targets)
    num = 5.0
    got = soft_token_loss(logits, targets, indices, num, 0.1)
    assert got.item() == pytest.approx(paper_soft_token(logits, targets, indices, num, 0.1), rel=1e-5)
    got = contrastive_align_loss(queries, tokens, padding, targets, indices, num, 0.07)
    assert got.item() == pytest.approx(paper_align(queries, tokens, padding, targets, indices, num, 0.07), rel=1e-5)


def test_criterion_weights_terms_and_scores_every_decoder_layer():
    logits, boxes, targets, queries, tokens, padding = _case(seed=2)
    out = MDetrOutput(logits, boxes, queries, tokens, padding, aux=[(logits * 0.5, boxes.flip(1), queries)])
    w = GroundingWeights(token=2.0, align=3.0, bbox=4.0, giou=1.5)
    terms, stats = GroundingCriterion(weights=w)(out, targets)
    assert set(terms) == {"token", "align", "bbox", "giou", "aux_token", "aux_align", "aux_bbox", "aux_giou"}
    plain, _ = GroundingCriterion(weights=GroundingWeights(1, 1, 1, 1))(out, targets)
    for k, f in (("token", 2.0), ("align", 3.0), ("bbox", 4.0), ("giou", 1.5)):
        assert terms[k].item() == pytest.approx(f * plain[k].item(), rel=1e-5)
    assert terms["aux_token"].item() != pytest.approx(terms["token"].item())  # the aux layer is scored on its own
    assert stats["token_acc"][1].item() == 5
