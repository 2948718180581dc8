"""``visionattn predict`` for a detection checkpoint: boxes (and panoptic segments) of image files, drawn into
PNGs with ``torchvision.utils.draw_bounding_boxes`` / ``draw_segmentation_masks``, and the detections as a COCO
results JSON.

Each file goes through ``visionattn.data.load_image`` (unreadable files are reported on their line and counted)
and the run's evaluation transform; detections are in the file's own pixel coordinates. ``--out DIR`` writes
``DIR/<stem>.png`` per image, ``DIR/detections.json`` (COCO results: ``image_id``, ``category_id``, ``bbox`` as
``[x, y, w, h]``, ``score``) and ``DIR/images.json`` (``images`` with the ids, file names and sizes, and
``categories``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ..base import PredictOptions, PredictOutput
from ..batching import pad_images
from .postprocess import VOID, detections, panoptic_map
from .transforms import build_detection_transform

__all__ = ["predict_files", "draw_detections", "palette"]


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (matplotlib's tab20 cycled)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [tuple(int(255 * c) for c in cmap(i % 20)[:3]) for i in range(n)]


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: Sequence[str],
                    colors: Sequence[tuple[int, int, int]] | str, panoptic: torch.Tensor | None = None,
                    width: int = 2) -> torch.Tensor:
    """uint8 ``(3, H, W)`` with the panoptic segments (if given: ``(H, W, 2)``) filled, then ``boxes`` ``(M, 4)``
    xyxy outlined and captioned ``labels``."""
    if panoptic is not None:
        ids = panoptic[..., 0] * 1000 + panoptic[..., 1]
        keys = [k for k in ids.unique().tolist() if k // 1000 != VOID]
        if keys:
            masks = torch.stack([ids == k for k in keys])
            image = draw_segmentation_masks(image, masks, alpha=0.45, colors=palette(len(keys)))
    if len(boxes):
        image = draw_bounding_boxes(image, boxes.float(), labels=list(labels), colors=colors, width=width)
    return image


@torch.no_grad()
def predict_files(model: nn.Module, meta: dict, paths: Sequence[str], options: PredictOptions, threshold: float,
                  panoptic_threshold: float, device: torch.device) -> PredictOutput:
    """Detect objects in ``paths``; see the module docstring for what is printed and written."""
    from PIL import Image

    from ...data import BadImage, load_image

    if options.texts:
        raise ValueError("detection predict takes image files and --threshold; --text is for other tasks")
    classes, isthing = list(meta["classes"]), list(meta["isthing"])
    category_ids = list(meta.get("category_ids") or range(len(classes)))
    transform = build_detection_transform(False, meta["mean"], meta["std"], meta.get("scales") or (),
                                          meta.get("max_size"))
    multiple = int(getattr(model, "size_multiple", 32))
    model.to(device).eval()
    out_dir = Path(options.out_dir) if options.out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    lines: dict[int, str] = {}
    files, results, images, errors = [], [], [], 0
    colors = palette(len(classes))
    loaded = []
    for i, path in enumerate(paths):
        try:
            pil = load_image(path)
        except BadImage as err:
            lines[i] = f"{path}: error: {err.reason}"
            errors += 1
            continue
        raw = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)
        loaded.append((i, path, raw, transform(tv_tensors.Image(raw)).as_subclass(torch.Tensor)))
    for start in range(0, len(loaded), max(1, options.batch_size)):
        chunk = loaded[start:start + options.batch_size]
        x, mask = pad_images([c[3] for c in chunk], multiple)
        out = model(x.to(device), mask.to(device))
        sizes = torch.tensor([list(c[2].shape[-2:]) for c in chunk], device=device)
        for b, (d, (i, path, raw, inp)) in enumerate(zip(detections(out.logits, out.boxes, sizes), chunk,
                                                        strict=True)):
            keep = d["scores"] >= threshold
            if any(isthing):
                keep &= torch.tensor([isthing[int(c)] for c in d["labels"]], device=keep.device, dtype=torch.bool)
            scores, labels, boxes = d["scores"][keep].cpu(), d["labels"][keep].cpu(), d["boxes"][keep].cpu()
            H, W = raw.shape[-2:]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
            found = "  ".join(f"{classes[int(c)]} {s:.2f} [{', '.join(f'{v:.0f}' for v in bx.tolist())}]"
                              for s, c, bx in zip(scores.tolist(), labels, boxes, strict=True))
            lines[i] = f"{path}: {len(scores)} object{'s' if len(scores) != 1 else ''}" + (f": {found}" if found
                                                                                          else "")
            images.append({"id": i, "file_name": str(path), "height": int(H), "width": int(W)})
            for s, c, bx in zip(scores.tolist(), labels.tolist(), boxes.tolist(), strict=True):
                results.append({"image_id": i, "category_id": int(category_ids[c]),
                                "bbox": [bx[0], bx[1], bx[2] - bx[0], bx[3] - bx[1]], "score": float(s)})
            if out_dir is not None:
                panoptic = None
                if out.masks is not None:
                    panoptic, _ = panoptic_map(out.logits[b], out.masks[b], inp.shape[-2:], x.shape[-2:], (H, W),
                                               isthing, panoptic_threshold)
                    panoptic = panoptic.cpu()
                drawn = draw_detections(raw, boxes, [f"{classes[int(c)]} {s:.2f}" for s, c in
                                                     zip(scores.tolist(), labels, strict=True)],
                                        [colors[int(c)] for c in labels], panoptic)
                target = out_dir / f"{Path(path).stem}.png"
                if target in files:
                    target = out_dir / f"{Path(path).stem}-{i}.png"
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(target)
                files.append(target)
    if out_dir is not None:
        (out_dir / "detections.json").write_text(json.dumps(results, indent=1) + "\n")
        categories = [{"id": int(category_ids[c]), "name": classes[c], "isthing": int(isthing[c])}
                      for c in range(len(classes))]
        (out_dir / "images.json").write_text(json.dumps({"images": images, "categories": categories}, indent=1)
                                             + "\n")
        files += [out_dir / "detections.json", out_dir / "images.json"]
    return PredictOutput([lines[i] for i in sorted(lines)], errors=errors, files=files)
