"""DETR's matcher and set loss against direct transcriptions on fixed seeded tensors: the Hungarian matcher finds
the assignment a brute-force search over every injective assignment finds, with DETR's cost written out per pair;
each loss term equals its formula written out with loops (CE with the no-object weight, L1 and 1 − GIoU over the
number of boxes, focal and dice for masks, the auxiliary layers), and the box count is averaged over ranks."""

from __future__ import annotations

import itertools
import math
import os
import socket

import pytest
import torch

from visionattn.comm import DistInfo
from visionattn.tasks.detection.loss import LossWeights, SetCriterion, count_boxes
from visionattn.tasks.detection.matcher import HungarianMatcher, match_cost
from visionattn.tasks.detection.model import DetrOutput


def _xyxy(b):
    cx, cy, w, h = b
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _giou(a, b) -> float:
    """Generalised IoU of two boxes (x1, y1, x2, y2), from its definition (Rezatofighi et al. 2019)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    union = area(a) + area(b) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def _pair_cost(logit_row, box, label, tbox, wc=1.0, wb=5.0, wg=2.0) -> float:
    p = torch.softmax(logit_row.double(), -1)[label].item()
    l1 = sum(abs(float(u) - float(v)) for u, v in zip(box, tbox, strict=True))
    return -wc * p + wb * l1 - wg * _giou(_xyxy([float(v) for v in box]), _xyxy([float(v) for v in tbox]))


def _problem(seed: int, B=3, N=6, K=4, counts=(3, 0, 5)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, N, K + 1, generator=g)
    centres = 0.2 + 0.6 * torch.rand(B, N, 2, generator=g)
    boxes = torch.cat([centres, 0.05 + 0.3 * torch.rand(B, N, 2, generator=g)], -1)
    targets = []
    for m in counts:
        c = 0.2 + 0.6 * torch.rand(m, 2, generator=g)
        targets.append({"labels": torch.randint(0, K, (m,), generator=g),
                        "boxes": torch.cat([c, 0.05 + 0.3 * torch.rand(m, 2, generator=g)], -1),
                        "masks": torch.rand(m, 16, 20, generator=g) > 0.6})
    return logits, boxes, targets


def test_cost_matrix_is_detrs_cost_written_out():
    logits, boxes, targets = _problem(0)
    t = targets[0]
    cost = match_cost(logits[0], boxes[0], t["labels"], t["boxes"], 1.0, 5.0, 2.0)
    for i in range(logits.shape[1]):
        for j in range(len(t["labels"])):
            expected = _pair_cost(logits[0, i], boxes[0, i], int(t["labels"][j]), t["boxes"][j])
            assert cost[i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    weighted = match_cost(logits[0], boxes[0], t["labels"], t["boxes"], 2.0, 1.0, 3.0)
    assert weighted[1, 2].item() == pytest.approx(_pair_cost(logits[0, 1], boxes[0, 1], int(t["labels"][2]),
                                                             t["boxes"][2], 2.0, 1.0, 3.0), rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_matcher_finds_the_brute_force_optimum(seed):
    logits, boxes, targets = _problem(seed, counts=(3, 0, 5))
    matched = HungarianMatcher()(logits, boxes, targets)
    for b, (t, (rows, cols)) in enumerate(zip(targets, matched, strict=True)):
        m = len(t["labels"])
        assert len(rows) == len(cols) == min(m, logits.shape[1])
        if m == 0:
            continue
        def cost(assign, b=b, t=t):
            return sum(_pair_cost(logits[b, q], boxes[b, q], int(t["labels"][j]), t["boxes"][j])
                       for j, q in enumerate(assign))

        best = min(itertools.permutations(range(logits.shape[1]), m), key=cost)
        got = [0] * m
        for q, j in zip(rows.tolist(), cols.tolist(), strict=True):
            got[j] = q
        assert cost(got) == pytest.approx(cost(best), rel=1e-9, abs=1e-9)
        assert rows.tolist() == sorted(rows.tolist())  # sorted by query
    nan = logits.clone()
    nan[0, 0, 0] = float("nan")  # a non-finite forward still matches (the loss then shows the NaN)
    assert len(HungarianMatcher()(nan, boxes, targets)[0][0]) == 3
    with pytest.raises(ValueError, match="costs must be >= 0"):
        HungarianMatcher(-1.0, 5.0, 2.0)


def _transcribed_losses(logits, boxes, targets, indices, K, w: LossWeights, num_boxes: float):
    """DETR's SetCriterion terms for one decoder output, with loops."""
    B, N, _ = logits.shape
    ce_num = ce_den = 0.0
    for b in range(B):
        assigned = {int(q): int(targets[b]["labels"][j]) for q, j in zip(*indices[b], strict=True)}
        for q in range(N):
            c = assigned.get(q, K)
            weight = w.eos_coef if c == K else 1.0
            ce_num += -weight * torch.log_softmax(logits[b, q].double(), -1)[c].item()
            ce_den += weight
    l1 = giou = 0.0
    for b in range(B):
        for q, j in zip(*indices[b], strict=True):
            src, tgt = boxes[b, int(q)], targets[b]["boxes"][int(j)]
            l1 += sum(abs(float(u) - float(v)) for u, v in zip(src, tgt, strict=True))
            giou += 1 - _giou(_xyxy([float(v) for v in src]), _xyxy([float(v) for v in tgt]))
    return {"ce": w.ce * ce_num / ce_den, "bbox": w.bbox * l1 / num_boxes, "giou": w.giou * giou / num_boxes}


def _transcribed_masks(masks, targets, indices, image_size, num_boxes):
    H, W = image_size
    focal = dice = 0.0
    for b in range(len(targets)):
        for q, j in zip(*indices[b], strict=True):
            tgt = torch.zeros(H, W, dtype=torch.float64)
            m = targets[b]["masks"][int(j)]
            tgt[: m.shape[0], : m.shape[1]] = m.double()
            x = torch.nn.functional.interpolate(masks[b, int(q)][None, None].double(), size=(H, W), mode="bilinear",
                                                align_corners=False)[0, 0]
            p = torch.sigmoid(x)
            ce = -(tgt * torch.log(p) + (1 - tgt) * torch.log(1 - p))
            p_t = p * tgt + (1 - p) * (1 - tgt)
            alpha_t = 0.25 * tgt + 0.75 * (1 - tgt)
            focal += (alpha_t * ce * (1 - p_t) ** 2).mean().item()
            dice += 1 - (2 * (p * tgt).sum().item() + 1) / (p.sum().item() + tgt.sum().item() + 1)
    return focal / num_boxes, dice / num_boxes


def test_set_loss_terms_equal_their_transcription():
    logits, boxes, targets = _problem(5)
    g = torch.Generator().manual_seed(9)
    aux = [(torch.randn(logits.shape, generator=g), torch.rand(boxes.shape, generator=g) * 0.5 + 0.25)
           for _ in range(2)]
    masks = torch.randn(3, 6, 8, 10, generator=g)
    w = LossWeights(ce=1.5, bbox=4.0, giou=3.0, mask=2.0, dice=0.5, eos_coef=0.2)
    criterion = SetCriterion(4, HungarianMatcher(), w, aux=True, masks=True)
    out = DetrOutput(logits, boxes, aux, masks)
    terms, stats = criterion(out, targets, image_size=(16, 20))
    num_boxes = 8.0
    matcher = HungarianMatcher()
    indices = matcher(logits, boxes, targets)
    expected = _transcribed_losses(logits, boxes, targets, indices, 4, w, num_boxes)
    for name in ("ce", "bbox", "giou"):
        assert terms[name].item() == pytest.approx(expected[name], rel=1e-5), name
    focal, dice = _transcribed_masks(masks, targets, indices, (16, 20), num_boxes)
    assert terms["mask"].item() == pytest.approx(w.mask * focal, rel=1e-5)
    assert terms["dice"].item() == pytest.approx(w.dice * dice, rel=1e-5)
    for name in ("ce", "bbox", "giou"):  # each auxiliary layer is matched on its own outputs
        want = sum(_transcribed_losses(a_l, a_b, targets, matcher(a_l, a_b, targets), 4, w, num_boxes)[name]
                   for a_l, a_b in aux)
        assert terms[f"aux_{name}"].item() == pytest.approx(want, rel=1e-5), name
    correct, matched = stats["class_acc"]
    assert int(matched) == 8
    assert int(correct) == sum(int(logits[b, q].argmax() == targets[b]["labels"][j])
                               for b in range(3) for q, j in zip(*indices[b], strict=True))
    no_aux, _ = SetCriterion(4, aux=False)(out, targets)
    assert set(no_aux) == {"ce", "bbox", "giou"}


def test_more_objects_than_queries_normalise_by_objects_not_matches():
    logits, boxes, targets = _problem(3, N=4, counts=(6, 1, 2))  # the first image: 6 objects, 4 queries
    terms, stats = SetCriterion(4, aux=False)(DetrOutput(logits, boxes), targets)
    assert int(stats["class_acc"][1]) == 4 + 1 + 2  # matched
    indices = HungarianMatcher()(logits, boxes, targets)
    expected = _transcribed_losses(logits, boxes, targets, indices, 4, LossWeights(), num_boxes=9.0)
    assert terms["bbox"].item() == pytest.approx(expected["bbox"], rel=1e-5)
    assert terms["giou"].item() == pytest.approx(expected["giou"], rel=1e-5)


def test_a_batch_without_objects_learns_no_object():
    logits, boxes, targets = _problem(1, counts=(0, 0, 0))
    terms, _ = SetCriterion(4)(DetrOutput(logits, boxes), targets)
    want = -torch.log_softmax(logits.double(), -1)[..., -1].mean().item()  # every query: "no object"
    assert terms["ce"].item() == pytest.approx(want, rel=1e-6)
    assert terms["bbox"].item() == 0.0 and terms["giou"].item() == 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_worker(rank: int, port: int, out: str):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        info = DistInfo(rank, 2, rank, torch.device("cpu"), rank == 0)
        targets = [{"labels": torch.zeros(n)} for n in ((3, 2) if rank == 0 else (0, 1))]
        torch.save(count_boxes(targets, torch.device("cpu"), info), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_box_count_is_averaged_over_ranks(tmp_path):
    torch.multiprocessing.spawn(_count_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [float(torch.load(tmp_path / f"{r}.pt")) for r in (0, 1)] == [3.0, 3.0]  # (5 + 1) / 2 on each rank


def test_box_count_of_one_process():
    assert float(count_boxes([{"labels": torch.zeros(2)}, {"labels": torch.zeros(3)}], torch.device("cpu"))) == 5
    assert float(count_boxes([{"labels": torch.zeros(0)}], torch.device("cpu"))) == 1.0  # clamped: no 0 division
    assert not math.isnan(float(count_boxes([], torch.device("cpu"))))


@pytest.mark.parametrize("costs", [(-1.0, 5.0, 2.0), (1.0, -0.5, 2.0), (1.0, 5.0, -2.0), (0.0, 0.0, 0.0)])
def test_matcher_refuses_negative_or_all_zero_costs(costs):
    """A negative weight would reward bad matches and all-zero weights make every assignment equal: both are named
    errors; a zero weight beside positive ones is a valid choice (DETR ablates single terms)."""
    with pytest.raises(ValueError, match=r"HungarianMatcher: costs must be >= 0 and not all 0, got class"):
        HungarianMatcher(*costs)
    for valid in ((0.0, 5.0, 2.0), (1.0, 0.0, 0.0), (0.0, 0.0, 2.0), (0.5, 1.0, 1.0)):
        HungarianMatcher(*valid)


def test_mask_loss_without_masks_or_image_size_is_a_named_error():
    """``SetCriterion(masks=True)`` given a box-only output, or no padded image size, says which of the two is
    missing and how to fix it (rather than failing inside the mask loss)."""
    logits, boxes, targets = _problem(5)
    criterion = SetCriterion(4, masks=True)
    with pytest.raises(ValueError, match=r"^SetCriterion\(masks=True\): the model gave no masks \(build it with "
                                         r"masks=True\)$"):
        criterion(DetrOutput(logits, boxes), targets, image_size=(16, 20))
    masks = torch.randn(3, 6, 8, 10, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=r"^SetCriterion\(masks=True\): image_size \(the padded batch size\) is "
                                         r"required$"):
        criterion(DetrOutput(logits, boxes, masks=masks), targets)
