"""From DETR's outputs to results in original image coordinates: detections (DETR's ``PostProcess``) and panoptic
maps (DETR's ``PostProcessPanoptic``, things + stuff)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert

__all__ = ["detections", "panoptic_map", "VOID"]

VOID = -1
"""Category of panoptic pixels that no kept segment claims."""


def detections(logits: Tensor, boxes: Tensor, sizes: Tensor) -> list[dict[str, Tensor]]:
    """``logits`` ``(B, N, K + 1)``, ``boxes`` ``(B, N, 4)`` normalised cxcywh, ``sizes`` ``(B, 2)`` the ``(H, W)``
    to scale to (the original image's, for evaluation) → per image ``{"scores" (N,), "labels" (N,), "boxes" (N, 4)
    xyxy pixels}``: every query, its best real class and that class's probability, sorted by score."""
    prob = logits.float().softmax(-1)
    scores, labels = prob[..., :-1].max(-1)  # (B, N)
    h, w = sizes.float().unbind(-1)
    scale = torch.stack([w, h, w, h], dim=-1)[:, None]  # (B, 1, 4)
    xyxy = box_convert(boxes.float(), "cxcywh", "xyxy") * scale  # (B, N, 4)
    out = []
    for s, lab, b in zip(scores, labels, xyxy, strict=True):
        order = s.argsort(descending=True)
        out.append({"scores": s[order], "labels": lab[order], "boxes": b[order]})
    return out


def panoptic_map(logits: Tensor, masks: Tensor, input_size: Sequence[int], padded_size: Sequence[int],
                 target_size: Sequence[int], isthing: Sequence[bool], threshold: float = 0.85,
                 min_area: int = 4) -> tuple[Tensor, list[dict]]:
    """One image's panoptic segmentation.

    logits ``(N, K + 1)``, masks ``(N, h, w)`` logits over the padded batch at the mask stride; input_size: the
    image's ``(H, W)`` inside the padded ``padded_size``; target_size: the ``(H0, W0)`` to answer in.

    As DETR: keep the queries whose most likely class is real with probability above ``threshold``; give each pixel
    to the kept query with the largest mask logit (masks upsampled to the padded size, cropped to the image); merge
    the segments of one stuff class; drop segments of at most ``min_area`` pixels and reassign, until none is that
    small; the id map is resized to ``target_size`` (nearest). Returns ``(panoptic (H0, W0, 2) int64, segments)``:
    per pixel ``(class index, instance id)`` (things numbered from 1, stuff 0; :data:`VOID` where nothing is kept)
    and per segment ``{"id", "category", "isthing", "score", "area"}``."""
    prob = logits.float().softmax(-1)
    scores, labels = prob.max(-1)  # (N,) including "no object" = K
    keep = (labels != logits.shape[-1] - 1) & (scores > threshold)
    scores, labels = scores[keep], labels[keep]
    H, W = (int(v) for v in input_size)
    if keep.any():
        m = F.interpolate(masks[keep][None].float(), size=tuple(int(v) for v in padded_size), mode="bilinear",
                          align_corners=False)[0, :, :H, :W]  # (k, H, W)
    else:
        m = masks.new_zeros(0, H, W)
    while True:
        if len(labels) == 0:
            ids = torch.full((H, W), -1, dtype=torch.int64, device=logits.device)
            break
        ids = m.argmax(0)  # (H, W) index into the kept queries
        for cls in labels.unique().tolist():
            same = (labels == cls).nonzero().flatten()
            if not isthing[cls] and len(same) > 1:  # one segment per stuff class
                for j in same[1:].tolist():
                    ids[ids == j] = int(same[0])
        area = torch.bincount(ids.flatten(), minlength=len(labels))
        small = area <= min_area
        if not small.any():
            break
        scores, labels, m = scores[~small], labels[~small], m[~small]
    H0, W0 = (int(v) for v in target_size)
    if (H0, W0) != (H, W):
        ids = F.interpolate(ids[None, None].float(), size=(H0, W0), mode="nearest")[0, 0].long()
    panoptic = torch.full((H0, W0, 2), 0, dtype=torch.int64, device=logits.device)
    panoptic[..., 0] = VOID
    segments, instance = [], 0
    for j in range(len(labels)):
        region = ids == j
        if not region.any():
            continue
        cls = int(labels[j])
        thing = bool(isthing[cls])
        instance += thing
        panoptic[region] = torch.tensor([cls, instance if thing else 0], device=logits.device)
        segments.append({"id": j, "category": cls, "isthing": thing, "score": float(scores[j]),
                         "area": int(region.sum())})
    return panoptic, segments
