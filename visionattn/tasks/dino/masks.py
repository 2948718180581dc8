"""Emergent masks: the last attention layer's [CLS] attention (the centre pixel's, for backbones without a class
token), DINO-style thresholded masks, and their Jaccard against ground-truth foreground masks.

The mask is the paper's (``visualize_attention.py``): keep the smallest set of patches that holds ``fraction``
(0.6) of the attention mass (:func:`visionattn.analysis.overlay.threshold_mask`), for the mean of the heads and for
each head. Jaccard = |mask ∩ truth| / |mask ∪ truth| per image (``torchmetrics``' binary Jaccard index), averaged
over images; "best head" is the head whose mean Jaccard over the images is highest (the paper reports its best
head too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["AttentionMaps", "attention_maps", "mask_jaccard"]


@dataclass
class AttentionMaps:
    """``maps`` float32 ``(B, heads, H, W)``: each head's attention of the query over the image (token cells
    upsampled, nearest), summing to ≤ 1 over the keys; ``masks`` bool ``(B, 1 + heads, H, W)``: the thresholded
    mask of the head mean, then of each head; ``query``: ``"cls"`` or the centre pixel ``(x, y)``; ``layer``: its
    name."""

    maps: Tensor
    masks: Tensor
    query: object
    layer: str


@torch.no_grad()
def attention_maps(backbone: nn.Module, images: Tensor, fraction: float = 0.6) -> AttentionMaps | None:
    """:class:`AttentionMaps` of ``backbone`` on ``images`` ``(B, 3, H, W)`` (the model in eval mode, put back),
    or None when it makes no attention call (a CNN) or its last layer cannot be placed on the image."""
    from ...analysis.maps import capture_attention, query_rows, upsample_to_image
    from ...analysis.overlay import threshold_mask

    was = backbone.training
    backbone.eval()
    try:
        capture = capture_attention(backbone, images, layers="last")
    except ValueError:
        return None
    finally:
        backbone.train(was)
    layer = capture.layers[-1]
    if layer.unmappable:
        return None
    H, W = capture.image_size
    query = "cls" if layer.prefix else (W // 2, H // 2)
    rows = query_rows(capture, layer, [query])[:, 0]  # (B, heads, h, w) on the key grid
    masks = threshold_mask(torch.cat([rows.mean(1, keepdim=True), rows], 1), fraction, dims=2)  # (B, 1+heads, h, w)
    return AttentionMaps(upsample_to_image(rows, layer.reduction, (H, W)).float(),
                         upsample_to_image(masks, layer.reduction, (H, W)), query, layer.name)


def mask_jaccard(masks: Tensor, truth: Tensor) -> dict[str, float]:
    """``masks`` bool ``(B, 1 + heads, H, W)`` (head mean first) against ``truth`` bool ``(B, H, W)`` →
    ``{"mean_heads": mean Jaccard of the head-mean masks, "best_head": the best head's mean Jaccard,
    "best_head_index": its index}``. An image whose mask and truth are both empty counts 1."""
    from torchmetrics.functional.classification import binary_jaccard_index

    if masks.ndim != 4 or truth.ndim != 3 or masks.shape[0] != truth.shape[0] or masks.shape[2:] != truth.shape[1:]:
        raise ValueError(f"mask_jaccard: expected masks (B, 1 + heads, H, W) and truth (B, H, W), got "
                         f"{tuple(masks.shape)} and {tuple(truth.shape)}")
    scores = torch.zeros(masks.shape[0], masks.shape[1])
    for b in range(masks.shape[0]):
        t = truth[b].long().flatten()
        for h in range(masks.shape[1]):
            m = masks[b, h].long().flatten()
            scores[b, h] = 1.0 if not (m.any() or t.any()) else float(binary_jaccard_index(m, t))
    per_head = scores[:, 1:].mean(0)
    return {"mean_heads": float(scores[:, 0].mean()), "best_head": float(per_head.max()),
            "best_head_index": int(per_head.argmax())}
