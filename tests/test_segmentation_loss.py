"""The loss (masked, weighted cross-entropy + auxiliary terms) against PyTorch's ``cross_entropy``; sliding-window
inference against whole-image inference and against hand-computed averages; the confusion-matrix metrics against
torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from visionattn.comm import LOCAL
from visionattn.tasks.segmentation.inference import slide_inference, sliding_windows, whole_inference, window_starts
from visionattn.tasks.segmentation.loss import SegmentationLoss, masked_cross_entropy
from visionattn.tasks.segmentation.metrics import ConfusionMetric, class_key, scores_from_confusion


def _data(seed=0, K=5, shape=(3, 7, 9), ignore_share=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], K, *shape[1:], generator=g) * 2
    target = torch.randint(0, K, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignore_share] = 255
    return logits, target


# -- loss ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_cross_entropy_is_torch_cross_entropy(weighted):
    logits, target = _data(1)
    assert (target == 255).any() and (target != 255).any()
    weight = torch.tensor([0.5, 1.0, 2.0, 0.1, 3.0]) if weighted else None
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = masked_cross_entropy(a, target, weight, 255)
    ref = F.cross_entropy(b, target, weight=weight, ignore_index=255)
    torch.testing.assert_close(ours, ref)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_a_batch_of_only_ignored_pixels_gives_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    loss = masked_cross_entropy(logits, target, None, 255)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert torch.isnan(F.cross_entropy(logits, target, ignore_index=255))  # what the guard is for


def test_segmentation_loss_adds_weighted_aux_terms():
    logits, target = _data(2)
    aux = [_data(3)[0], _data(4)[0]]
    total, terms = SegmentationLoss(5, aux_weight=0.4)(logits, aux, target)
    ce = F.cross_entropy(logits, target, ignore_index=255)
    aux_ce = sum(F.cross_entropy(a, target, ignore_index=255) for a in aux)
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["aux"], 0.4 * aux_ce)
    torch.testing.assert_close(total, ce + 0.4 * aux_ce)
    assert set(SegmentationLoss(5)(logits, [], target)[1]) == {"ce"}
    with pytest.raises(ValueError, match=r"class_weights: expected 5 non-negative numbers \(one per class\), got"):
        SegmentationLoss(5, class_weights=[1.0, 2.0])


# -- inference -----------------------------------------------------------------------------------------------------
def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(6, 4, 2) == [0, 2]
    assert window_starts(7, 4, 2) == [0, 2, 3]  # the last window moved back to end at the border
    assert window_starts(3, 4, 2) == [0]  # smaller than the window: one window
    assert window_starts(8, 4, 4) == [0, 4]
    with pytest.raises(ValueError, match="stride 5 > window 4 would leave pixels uncovered"):
        window_starts(10, 4, 5)
    for length, window, stride in [(97, 32, 21), (64, 64, 42), (65, 64, 42), (10, 3, 1)]:
        covered = np.zeros(length, dtype=int)
        for s in window_starts(length, window, stride):
            covered[s: s + window] += 1
        assert covered.min() >= 1, (length, window, stride)


def test_sliding_windows_average_overlaps_by_hand():
    """Each window answers its own number (1, 2, 3) everywhere; W = 7, window 4, stride 2 gives windows at x = 0, 2, 3:
    columns 0-1 see window 1, column 2 windows 1-2, column 3 all three, columns 4-5 windows 2-3, column 6 window 3."""
    calls = []

    def forward(x, mask):
        calls.append(x.shape[-2:])
        return torch.full((x.shape[0], 2, *x.shape[-2:]), float(len(calls)))

    out = slide_inference(forward, torch.zeros(1, 3, 4, 7), 2, window=(4, 4), stride=(2, 2))
    assert calls == [(4, 4)] * 3
    expected = torch.tensor([1, 1, 1.5, 2, 2.5, 2.5, 3])
    torch.testing.assert_close(out[0, 0], expected.expand(4, 7))
    assert sliding_windows((4, 7), (4, 4), (2, 2)) == [(0, 4, 0, 4), (0, 4, 2, 6), (0, 4, 3, 7)]


def test_sliding_equals_whole_on_an_image_the_size_of_the_window():
    from visionattn.models import create_model
    from visionattn.tasks.segmentation.model import build_segmentation_model

    torch.manual_seed(0)
    model = build_segmentation_model(create_model("vit_tiny_test", num_classes=0, patch=8, dim=32, depth=2, heads=2),
                                     "pup", num_classes=4, channels=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        whole = whole_inference(model, x)
        slide = slide_inference(model, x, 4, window=(32, 32), stride=(21, 21))
    torch.testing.assert_close(slide, whole)


def test_sliding_windows_get_their_crop_of_the_padding_mask():
    seen = []

    def forward(x, mask):
        seen.append(mask.clone())
        return torch.zeros(x.shape[0], 1, *x.shape[-2:])

    mask = torch.zeros(1, 6, 6, dtype=torch.bool)
    mask[:, :, 4:] = True
    slide_inference(forward, torch.zeros(1, 3, 6, 6), 1, (6, 4), (6, 2), padding_mask=mask)
    assert [m[0, 0].tolist() for m in seen] == [[False] * 4, [False, False, True, True]]


# -- metrics -------------------------------------------------------------------------------------------------------
def test_confusion_metric_equals_torchmetrics():
    K = 5
    metric = ConfusionMetric([f"c{i}" for i in range(K)], ignore_index=255)
    jaccard = MulticlassJaccardIndex(K, average="none", ignore_index=255)
    accuracy = MulticlassAccuracy(K, average="micro", ignore_index=255)
    losses, pixels = [], 0
    for seed in range(3):
        logits, target = _data(10 + seed, K)
        metric.update(logits, {"mask": target})
        jaccard.update(logits.argmax(1), target)
        accuracy.update(logits.argmax(1), target)
        losses.append(F.cross_entropy(logits, target, ignore_index=255, reduction="sum"))
        pixels += int((target != 255).sum())
    metric.reduce(LOCAL)
    evaluation = metric.compute()
    iou = jaccard.compute()
    torch.testing.assert_close(torch.from_numpy(evaluation.details.iou).float(), iou)
    assert evaluation.metrics["miou"] == pytest.approx(float(iou.mean()))
    assert evaluation.metrics["pixel_acc"] == pytest.approx(float(accuracy.compute()))
    assert evaluation.metrics["loss"] == pytest.approx(float(sum(losses)) / pixels, rel=1e-5)
    assert evaluation.metrics["iou_c3"] == pytest.approx(float(iou[3]))


def test_absent_classes_are_left_out_of_the_mean_by_hand():
    """Rows = true class. Class 2 is neither present nor predicted (NaN, not 0); class 1 is predicted but absent
    (IoU 0, counted)."""
    cm = np.array([[6, 2, 0], [0, 0, 0], [0, 0, 0]])
    s = scores_from_confusion(cm)
    assert s["iou"][0] == pytest.approx(6 / 8) and s["iou"][1] == 0 and np.isnan(s["iou"][2])
    assert s["miou"] == pytest.approx((6 / 8 + 0) / 2)
    assert s["pixel_acc"] == pytest.approx(6 / 8)
    assert s["acc"][0] == pytest.approx(6 / 8) and np.isnan(s["acc"][1])
    assert class_key("traffic light") == "iou_traffic_light" and class_key("_background_") == "iou_background"


def test_metric_refuses_mismatched_shapes_and_empty_sets():
    metric = ConfusionMetric(["a", "b"])
    with pytest.raises(ValueError, match=r"expected logits \(B, 2, H, W\) matching labels \(B, H, W\), got"):
        metric.update(torch.zeros(1, 3, 4, 4), {"mask": torch.zeros(1, 4, 4, dtype=torch.long)})
    metric.update(torch.zeros(1, 2, 4, 4), {"mask": torch.full((1, 4, 4), 255)})
    metric.reduce(LOCAL)
    with pytest.raises(ValueError, match="no labelled pixels in the validation set"):
        metric.compute()
