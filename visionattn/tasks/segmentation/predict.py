"""``visionattn predict`` for a segmentation checkpoint: label maps of image files, written as colour masks and
overlays.

Each file is read as the run's data was: ``visionattn.data.load_image`` (8-bit RGB; unreadable files are reported
on their line), or for a run on the nuclei image (``meta["intensity"] == "percentile"``) the raw gray values scaled
by their own 1st / 99.8th percentiles; then resized as the run evaluated (``task.resize``), normalised, and run
whole or by sliding windows (``task.inference``). The logits are resized back to the file's size before the arg-max,
so the written mask has the input's pixels. With ``--out DIR``: ``DIR/<stem>_mask.png`` (a palette PNG whose pixel
values are the class indices) and ``DIR/<stem>_overlay.png`` (the classes drawn over the image).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import PredictOutput
from .visual import mask_image, overlay

__all__ = ["read_input", "predict_files"]


def read_input(path: str, meta: dict) -> np.ndarray:
    """``path`` as ``(H, W, 3)`` uint8 the way the run's data was read (see the module docstring); ``BadImage``
    when it cannot be read."""
    from ...data import BadImage, load_image

    if meta.get("intensity") != "percentile":
        return np.asarray(load_image(path))
    from PIL import Image

    from ...data.segmentation import percentile_normalize

    try:
        with Image.open(path) as im:
            raw = np.asarray(im)
    except Exception as err:  # noqa: BLE001 - any Pillow failure is a bad input file
        load_image(path)  # raises BadImage with the usual reason (missing, not an image, ...)
        raise BadImage(path, f"decode failed: {type(err).__name__}: {err}") from err
    gray = raw if raw.ndim == 2 else raw[..., :3].mean(axis=-1)
    return np.repeat(percentile_normalize(gray)[..., None], 3, axis=-1)


def _unique_stem(path: str, used: set[str]) -> str:
    stem, k = Path(path).stem, 1
    name = stem
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


@torch.no_grad()
def predict_files(infer: Callable[[torch.Tensor], torch.Tensor], meta: dict, transform, inputs: Sequence[str],
                  out_dir: Path | None, top_k: int, device: torch.device) -> PredictOutput:
    """Label maps of ``inputs``: ``infer(x (1, 3, h, w)) -> logits (1, K, h, w)``, ``transform`` the evaluation
    transform (a sample dict in, out). One line per file: its size, the ``top_k`` largest classes by area and the
    files written."""
    from ...data import BadImage
    from ...data.segmentation import to_sample

    classes, palette = list(meta["classes"]), meta["palette"]
    lines, files, errors, used = [], [], 0, set()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for path in inputs:
        try:
            image = read_input(path, meta)  # (H, W, 3) uint8
        except BadImage as err:
            lines.append(f"{path}: error: {err.reason}")
            errors += 1
            continue
        H, W = image.shape[:2]
        x = transform(to_sample(image, np.zeros((H, W), dtype=np.int64)))["image"].as_subclass(torch.Tensor)
        logits = infer(x[None].to(device)).float()  # (1, K, h, w)
        if logits.shape[-2:] != (H, W):
            logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False)
        labels = logits.argmax(dim=1)[0].cpu().numpy()  # (H, W)
        counts = np.bincount(labels.ravel(), minlength=len(classes))
        ranked = [int(c) for c in np.argsort(-counts, kind="stable")[:top_k] if counts[c] > 0]
        shares = "  ".join(f"{classes[c]} {100 * counts[c] / labels.size:.1f}%" for c in ranked)
        line = f"{path}: {W}x{H}  {shares}"
        if out_dir is not None:
            stem = _unique_stem(path, used)
            mask_path, overlay_path = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png"
            mask_image(labels, palette).save(mask_path)
            from PIL import Image

            Image.fromarray(overlay(image, labels, palette)).save(overlay_path)
            files += [mask_path, overlay_path]
            line += f"  -> {mask_path.name}, {overlay_path.name}"
        lines.append(line)
    return PredictOutput(lines, errors=errors, files=files)
