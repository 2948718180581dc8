"""Emergent masks (:mod:`visionattn.tasks.dino.masks`): the Jaccard of thresholded attention masks against a
ground truth, checked against set arithmetic done by hand; the [CLS] maps and their DINO-style masks on a real ViT
(shapes, mass, the head-mean mask = the threshold of the head-mean map); a CNN gives None."""

from __future__ import annotations

import pytest
import torch

from visionattn.analysis.overlay import threshold_mask
from visionattn.models.registry import create_model
from visionattn.tasks.dino.masks import attention_maps, mask_jaccard


def _grid(rows):
    return torch.tensor(rows, dtype=torch.bool)


def test_mask_jaccard_against_hand_counts():
    truth = torch.stack([_grid([[1, 1, 0], [0, 0, 0]]), _grid([[0, 0, 0], [0, 0, 0]])])
    masks = torch.stack([
        torch.stack([_grid([[1, 0, 0], [0, 0, 0]]),    # mean of heads: |∩| 1 / |∪| 2
                     _grid([[1, 1, 1], [0, 0, 0]]),    # head 0: 2 / 3
                     _grid([[0, 0, 0], [0, 0, 1]])]),  # head 1: 0 / 3
        torch.stack([_grid([[0, 0, 0], [0, 0, 0]]),    # both empty: 1
                     _grid([[0, 1, 0], [0, 0, 0]]),    # 0 / 1
                     _grid([[0, 0, 0], [0, 0, 0]])]),  # both empty: 1
    ])
    got = mask_jaccard(masks, truth)
    assert got["mean_heads"] == pytest.approx((1 / 2 + 1) / 2)
    # head 0: (2/3 + 0) / 2, head 1: (0 + 1) / 2
    assert got["best_head"] == pytest.approx((0 + 1) / 2) and got["best_head_index"] == 1
    with pytest.raises(ValueError, match=r"expected masks \(B, 1 \+ heads, H, W\) and truth \(B, H, W\), got "
                                         r"\(2, 3, 2, 3\) and \(2, 2, 2\)"):
        mask_jaccard(masks, truth[:, :, :2])


def test_cls_attention_maps_and_masks_on_a_vit():
    torch.manual_seed(0)
    vit = create_model("vit_tiny_test", num_classes=0, img_size=16, patch=4, dim=32, depth=2, heads=2).train()
    with torch.no_grad():
        for p in vit.parameters():  # peaked attention, heads that differ (the init's is near uniform)
            p.normal_(0, 0.3)
    x = torch.randn(3, 3, 16, 16)
    got = attention_maps(vit, x, fraction=0.6)
    assert vit.training and got.query == "cls"  # put back in train mode
    assert got.maps.shape == (3, 2, 16, 16) and got.masks.shape == (3, 3, 16, 16) and got.masks.dtype == torch.bool
    mass = got.maps.sum((2, 3)) / 16  # each 4x4 token cell repeated 16 times
    assert bool((mass > 0.2).all()) and bool((mass < 1.0).all())  # the rest is the [CLS] attending to itself
    tokens = got.maps[:, :, ::4, ::4]  # (3, 2, 4, 4): one value per patch
    want = threshold_mask(torch.cat([tokens.mean(1, keepdim=True), tokens], 1), 0.6, dims=2)
    assert torch.equal(got.masks, want.repeat_interleave(4, 2).repeat_interleave(4, 3))
    cells = got.masks[:, 0].float().mean((1, 2))
    assert bool((cells > 0).all()) and bool((cells < 1).all())  # keeps some patches, not all


def test_a_cnn_has_no_attention_map():
    cnn = create_model("resnet_test", num_classes=0, img_size=16)
    assert attention_maps(cnn, torch.randn(1, 3, 16, 16)) is None
