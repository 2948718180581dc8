"""Evaluation: COCO box mAP / mAP50 / mAP75 / AR@100 with per-class AP (``faster_coco_eval``, the COCO protocol),
and panoptic quality PQ / SQ / RQ (``torchmetrics`` ``PanopticQuality``).

Ground truth is every val image's boxes in its original coordinates (all of them count, small ones too); the
detections are all N queries of each image (DETR's protocol: no score threshold), scaled to the original size. Box
mAP covers the thing classes; PQ covers things and stuff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation
from .postprocess import VOID, detections, panoptic_map

__all__ = ["DetectionMetric", "DetectionDetails", "coco_box_metrics", "format_detection"]


@dataclass
class DetectionDetails:
    """per_class: rows ``{"class", "AP", "AP50", "objects"}``; images / objects / detections counted; pq_per_class
    when panoptic."""

    per_class: list[dict] = field(default_factory=list)
    images: int = 0
    objects: int = 0
    pq_per_class: list[dict] = field(default_factory=list)


def coco_box_metrics(gts: Sequence[dict], dets: Sequence[dict], classes: Sequence[str],
                     thing_ids: Sequence[int]) -> tuple[dict[str, float], list[dict]]:
    """COCO box evaluation. ``gts``: per image ``{"image_id", "size" (H, W), "boxes" (M, 4) xyxy, "labels" (M,)}``;
    ``dets``: per image ``{"image_id", "boxes" (N, 4) xyxy, "scores", "labels"}`` (numpy). Returns the metrics
    ``map, map50, map75, ar100`` (0 when nothing is detected) and per-class rows (AP NaN for a class without
    ground truth)."""
    from faster_coco_eval import COCO, COCOeval_faster

    things = [int(c) for c in thing_ids]
    images, anns, ann_id = [], [], 0
    for g in gts:
        images.append({"id": int(g["image_id"]), "height": int(g["size"][0]), "width": int(g["size"][1])})
        for box, label in zip(g["boxes"], g["labels"], strict=True):
            if int(label) not in things:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            ann_id += 1
            anns.append({"id": ann_id, "image_id": int(g["image_id"]), "category_id": int(label),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    gt = COCO({"images": images, "annotations": anns,
               "categories": [{"id": c, "name": classes[c]} for c in things]})
    results = []
    for d in dets:
        for box, score, label in zip(d["boxes"], d["scores"], d["labels"], strict=True):
            if int(label) in things:
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append({"image_id": int(d["image_id"]), "category_id": int(label),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    counts = {c: sum(int((np.asarray(g["labels"]) == c).sum()) for g in gts) for c in things}
    if not results or not anns:
        rows = [{"class": classes[c], "AP": float("nan") if not counts[c] else 0.0,
                 "AP50": float("nan") if not counts[c] else 0.0, "objects": counts[c]} for c in things]
        return {"map": 0.0, "map50": 0.0, "map75": 0.0, "ar100": 0.0}, rows
    ev = COCOeval_faster(gt, gt.loadRes(results), "bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = [max(float(s), 0.0) for s in ev.stats]
    precision = ev.eval["precision"]  # (T iou thresholds, R recall, K classes, A areas, M max dets)
    rows = []
    for k, c in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        ap = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        p50 = precision[0, :, k, 0, -1]
        ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else float("nan")
        rows.append({"class": classes[c], "AP": ap, "AP50": ap50, "objects": counts[int(c)]})
    return {"map": stats[0], "map50": stats[1], "map75": stats[2], "ar100": stats[8]}, rows


class DetectionMetric:
    """``update(outputs, batch)``: ``outputs`` as :meth:`DetectionTask.eval_forward` gives them (``logits``,
    ``boxes``, optional ``masks``), ``batch["target"]`` per image (``orig_boxes``, ``orig_labels``, ``orig_size``,
    ``size``, ``image_id``, optional ``panoptic``). ``reduce`` gathers detections and sums PQ counts over ranks."""

    def __init__(self, classes: Sequence[str], isthing: Sequence[bool], panoptic: bool = False,
                 panoptic_threshold: float = 0.85):
        self.classes, self.isthing = list(classes), [bool(t) for t in isthing]
        self.panoptic, self.panoptic_threshold = panoptic, panoptic_threshold
        self.gts: list[dict] = []
        self.dets: list[dict] = []
        self.pq = None
        if panoptic:
            from torchmetrics.detection import PanopticQuality

            things = [i for i, t in enumerate(self.isthing) if t]
            stuffs = [i for i, t in enumerate(self.isthing) if not t]
            self.pq = PanopticQuality(things=things, stuffs=stuffs, return_sq_and_rq=True, return_per_class=True,
                                      sync_on_compute=False)

    def update(self, outputs: dict, batch: dict) -> None:
        targets = batch["target"]
        sizes = torch.stack([t["orig_size"] for t in targets]).to(outputs["logits"].device)
        for t, d in zip(targets, detections(outputs["logits"], outputs["boxes"], sizes), strict=True):
            image_id = int(t["image_id"])
            self.gts.append({"image_id": image_id, "size": t["orig_size"].tolist(),
                             "boxes": t["orig_boxes"].cpu().numpy(), "labels": t["orig_labels"].cpu().numpy()})
            self.dets.append({"image_id": image_id, **{k: v.cpu().numpy() for k, v in d.items()}})
        if self.panoptic:
            padded = batch["image"].shape[-2:]
            for b, t in enumerate(targets):
                if "panoptic" not in t:
                    raise ValueError(f"panoptic evaluation: image {int(t['image_id'])} has no panoptic ground truth")
                pred, _ = panoptic_map(outputs["logits"][b], outputs["masks"][b], t["size"].tolist(), padded,
                                       t["orig_size"].tolist(), self.isthing, self.panoptic_threshold)
                target = t["panoptic"].long().to(pred.device)
                pred = pred.clone()
                pred[..., 0][pred[..., 0] == VOID] = len(self.classes)  # unknown to the metric: void
                target = target.clone()
                target[..., 0][target[..., 0] < 0] = len(self.classes)
                self.pq.update(pred[None].cpu(), target[None].cpu())

    def reduce(self, info: DistInfo) -> None:
        if not info.distributed:
            return
        gathered = [None] * info.world_size
        dist.all_gather_object(gathered, (self.gts, self.dets))
        self.gts = [g for part in gathered for g in part[0]]
        self.dets = [d for part in gathered for d in part[1]]
        if self.pq is not None:
            for name in ("iou_sum", "true_positives", "false_positives", "false_negatives"):
                setattr(self.pq, name, all_reduce_sum(getattr(self.pq, name), info))

    def compute(self) -> Evaluation:
        if not self.gts:
            raise ValueError("evaluate: the loader gave no images; expected a non-empty validation set")
        things = [i for i, t in enumerate(self.isthing) if t]
        metrics, rows = coco_box_metrics(self.gts, self.dets, self.classes, things)
        details = DetectionDetails(rows, len(self.gts), int(sum(len(g["labels"]) for g in self.gts)))
        if self.pq is not None:
            per_class = self.pq.compute().reshape(-1, 3)  # (classes, [PQ, SQ, RQ]) in the metric's own order
            seen = (self.pq.true_positives + self.pq.false_positives + self.pq.false_negatives) > 0
            # torchmetrics' averages: over the classes that occur in the ground truth or the predictions
            pq, sq, rq = (float(v) for v in per_class[seen].mean(0)) if seen.any() else (0.0, 0.0, 0.0)
            metrics.update(pq=pq, sq=sq, rq=rq)
            details.pq_per_class = [
                {"class": self.classes[c], "PQ": float(per_class[j, 0]) if seen[j] else float("nan"),
                 "SQ": float(per_class[j, 1]) if seen[j] else float("nan"),
                 "RQ": float(per_class[j, 2]) if seen[j] else float("nan"), "thing": self.isthing[c]}
                for c, j in sorted(self.pq.cat_id_to_continuous_id.items())]
        return Evaluation(metrics, details)


def format_detection(evaluation: Evaluation) -> str:
    """``visionattn eval`` text: the metrics, then per-class AP (and PQ) tables."""
    m, d = evaluation.metrics, evaluation.details
    lines = [f"images: {d.images}   objects: {d.objects}   " + "   ".join(f"{k}: {v:.4f}" for k, v in m.items()), ""]
    width = max([5] + [len(r["class"]) for r in d.per_class])
    lines.append(f"{'class':<{width}}  {'objects':>7}  {'AP':>6}  {'AP50':>6}")
    for r in d.per_class:
        lines.append(f"{r['class']:<{width}}  {r['objects']:>7}  {r['AP']:>6.3f}  {r['AP50']:>6.3f}")
    if d.pq_per_class:
        lines += ["", f"{'class':<{width}}  {'PQ':>6}  {'SQ':>6}  {'RQ':>6}"]
        for r in d.pq_per_class:
            lines.append(f"{r['class']:<{width}}  {r['PQ']:>6.3f}  {r['SQ']:>6.3f}  {r['RQ']:>6.3f}")
    return "\n".join(lines)
