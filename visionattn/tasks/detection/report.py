"""The detection task's report sections: validation images with ground truth and predictions side by side (boxes,
and panoptic segments with the panoptic head), per-class AP (and PQ) tables, and where the last decoder layer's
cross-attention of each detected object looks (the DETR paper's Fig. 6)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data.transforms import denormalize_with
from ...plotting import figure, png_bytes
from ..base import Evaluation, GridImage, ReportItem, TaskData
from .postprocess import detections, panoptic_map
from .predict import draw_detections, palette

__all__ = ["detection_items", "sample_pairs", "decoder_attention_item"]


def _uint8(image: torch.Tensor, meta: dict) -> torch.Tensor:
    shown = denormalize_with(image[None], meta["mean"], meta["std"])[0]  # (3, H, W) in [0, 1]
    return (shown.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def _pair_png(gt: torch.Tensor, pred: torch.Tensor, title: str) -> bytes:
    fig = figure(6.4, 3.4)
    for k, (img, name) in enumerate(((gt, "ground truth"), (pred, "prediction"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return png_bytes(fig)


@torch.no_grad()
def sample_pairs(model: nn.Module, data: TaskData, threshold: float, panoptic_threshold: float,
                 device: torch.device, count: int = 8) -> ReportItem:
    """Up to ``count`` validation images: ground truth beside the detections scoring at least ``threshold``."""
    meta, classes, isthing = data.meta, data.meta["classes"], data.meta["isthing"]
    colors = palette(len(classes))
    samples = [data.val[i] for i in range(min(count, len(data.val)))]
    batch = data.collate(samples)
    was = model.training
    model.eval()
    out = model(batch["image"].to(device), batch["padding_mask"].to(device))
    model.train(was)
    sizes = torch.stack([s["target"]["size"] for s in samples]).to(device)
    grid, found_total, gt_total = [], 0, 0
    for b, (s, d) in enumerate(zip(samples, detections(out.logits, out.boxes, sizes), strict=True)):
        t = s["target"]
        h, w = t["size"].tolist()
        image = _uint8(s["image"], meta)[:, :h, :w]
        keep = (d["scores"] >= threshold) & torch.tensor([bool(isthing[int(c)]) for c in d["labels"]],
                                                         dtype=torch.bool, device=d["scores"].device)
        boxes, labels, scores = d["boxes"][keep].cpu(), d["labels"][keep].cpu(), d["scores"][keep].cpu()
        gt_boxes = F.pad(t["boxes"], (0, 0)) * torch.tensor([w, h, w, h])
        from torchvision.ops import box_convert

        gt_boxes = box_convert(gt_boxes, "cxcywh", "xyxy")
        gt_thing = torch.tensor([bool(isthing[int(c)]) for c in t["labels"]], dtype=torch.bool)
        gt_pan = pred_pan = None
        if out.masks is not None and "panoptic" in t:
            pred_pan, _ = panoptic_map(out.logits[b], out.masks[b], (h, w), batch["image"].shape[-2:], (h, w),
                                       isthing, panoptic_threshold)
            pred_pan = pred_pan.cpu()
            gt_pan = t["panoptic"] if tuple(t["panoptic"].shape[:2]) == (h, w) else None
        gt_img = draw_detections(image, gt_boxes[gt_thing], [classes[int(c)] for c in t["labels"][gt_thing]],
                                 [colors[int(c)] for c in t["labels"][gt_thing]], gt_pan, width=1)
        pred_img = draw_detections(image, boxes, [f"{classes[int(c)]} {p:.2f}" for c, p in
                                                  zip(labels, scores.tolist(), strict=True)],
                                   [colors[int(c)] for c in labels], pred_pan, width=1)
        n_gt = int(gt_thing.sum())
        found_total, gt_total = found_total + len(boxes), gt_total + n_gt
        grid.append(GridImage(_pair_png(gt_img, pred_img, f"image {int(t['image_id'])}: {n_gt} objects, "
                                                          f"{len(boxes)} detected"), f"image {int(t['image_id'])}"))
    text = (f"Ground truth (left) and detections with score >= {threshold:g} (right) on the first {len(grid)} "
            f"validation images: {gt_total} objects, {found_total} detections."
            + (" Panoptic segments are filled (prediction: DETR's panoptic post-processing)." if out.masks is not None
               else ""))
    return ReportItem("Detections on validation images", text=text, grid=grid)


def _fmt_rows(rows: list[dict]) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) and not np.isnan(v) else ("-" if isinstance(v, float) else v))
             for k, v in r.items()} for r in rows]


def detection_items(evaluation: Evaluation | None) -> list[ReportItem]:
    """Per-class AP (COCO) and, with the panoptic head, per-class PQ / SQ / RQ."""
    if evaluation is None:
        return []
    d, m = evaluation.details, evaluation.metrics
    head = ", ".join(f"{k} {v:.4f}" for k, v in m.items())
    items = [ReportItem("Per-class AP (validation, COCO protocol)", text=f"{d.images} images, {d.objects} objects: "
                        f"{head}.", table=_fmt_rows(d.per_class))]
    if d.pq_per_class:
        items.append(ReportItem("Panoptic quality per class (validation)", table=_fmt_rows(d.pq_per_class)))
    return items


@torch.no_grad()
def decoder_attention_item(model: nn.Module, data: TaskData, threshold: float, device: torch.device,
                           count: int = 4) -> ReportItem | None:
    """The last decoder layer's cross-attention (mean over heads) of the ``count`` most confident detections of
    the first validation image, on the image: what each object query looked at."""
    from ...ops import attention_probs, observe_attention

    if not len(data.val):
        return None
    sample = data.val[0]
    batch = data.collate([sample])
    calls = []
    was = model.training
    model.eval()
    with observe_attention(lambda call, out: calls.append(call)):
        out = model(batch["image"].to(device), batch["padding_mask"].to(device))
    model.train(was)
    n = model.spec.num_queries
    cross = [c for c in calls if c.q_grid == (n,) and c.kv_grid != (n,)]
    if not cross:
        return None
    call = cross[-1]
    prob = out.logits[0].float().softmax(-1)[:, :-1]
    scores, labels = prob.max(-1)
    top = scores.argsort(descending=True)[:count]
    top = top[scores[top] >= min(threshold, float(scores[top[0]]))]
    probs = attention_probs(call, top).mean(1)[0]  # (k, L [+1]) mean over heads
    Hp, Wp = batch["image"].shape[-2:]
    hf, wf = (int(v) for v in model.backbone(batch["image"][:1].to(device))[-1][0].shape[-2:])
    maps = probs[:, : hf * wf].reshape(-1, hf, wf).cpu()
    h, w = sample["target"]["size"].tolist()
    image = _uint8(sample["image"], data.meta)[:, :h, :w].permute(1, 2, 0).numpy()
    classes = data.meta["classes"]
    fig = figure(2.4 * (len(top) + 1), 2.6)
    ax = fig.add_subplot(1, len(top) + 1, 1)
    ax.imshow(image)
    ax.set_title("image", fontsize=9)
    ax.axis("off")
    for k, q in enumerate(top.tolist()):
        up = F.interpolate(maps[k][None, None], size=(Hp, Wp), mode="bilinear", align_corners=False)[0, 0, :h, :w]
        ax = fig.add_subplot(1, len(top) + 1, k + 2)
        ax.imshow(image)
        ax.imshow(up.numpy(), alpha=0.6, cmap="magma")
        ax.set_title(f"query {q}: {classes[int(labels[q])]} {float(scores[q]):.2f}", fontsize=8)
        ax.axis("off")
    return ReportItem("Decoder cross-attention of detected objects", text="Mean over heads of the last decoder "
                      "layer's cross-attention from each of the most confident object queries to the encoder "
                      "memory, upsampled to the image.", png=png_bytes(fig), filename="decoder_attention.png")
