"""The video task's report sections: the confusion matrix and per-class accuracy (as classification's), a strip of
validation clips marked right or wrong, and the space-time attention of a moving digit (the last block's calls)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...data.transforms import denormalize_with
from ...plotting import image_png, png_bytes
from ..base import GridImage, ReportItem
from .attention_maps import space_time_figure, space_time_maps

__all__ = ["attention_item", "clip_strip", "shown_frames", "sample_strips"]


def shown_frames(clip: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """A normalised clip ``(3, T, H, W)`` → grey frames in [0, 1] ``(T, H, W)`` for display."""
    rgb = denormalize_with(clip.transpose(0, 1), mean, std).clamp(0, 1)  # (T, 3, H, W)
    return rgb.mean(dim=1)


def clip_strip(frames: Tensor) -> np.ndarray:
    """``(T, H, W)`` in [0, 1] → one uint8 RGB image of the frames side by side, 1-pixel grey gaps."""
    T, H, W = frames.shape
    strip = np.full((H, T * (W + 1) - 1, 3), 128, dtype=np.uint8)
    for t in range(T):
        strip[:, t * (W + 1): t * (W + 1) + W] = (frames[t].numpy()[..., None] * 255 + 0.5).astype(np.uint8)
    return strip


@torch.no_grad()
def sample_strips(model: nn.Module, clips: Tensor, labels: Sequence[int], classes: Sequence[str], meta: dict,
                  device: torch.device) -> ReportItem:
    """``clips`` (n, K, 3, T, H, W) validation items: each video's first clip as a strip of frames with the true
    class, the prediction (mean softmax over the K clips) when wrong, and a green / red frame."""
    was = model.training
    model.eval()
    n, K = clips.shape[:2]
    probs = model(clips.flatten(0, 1).to(device)).float().softmax(-1).reshape(n, K, -1).mean(1)
    model.train(was)
    grid, right = [], 0
    for b, (true, pred) in enumerate(zip(labels, probs.argmax(-1).tolist(), strict=True)):
        ok = int(true) == int(pred)
        right += ok
        strip = clip_strip(shown_frames(clips[b, 0], meta["mean"], meta["std"]))
        caption = f"{'✓' if ok else '✗'} true: {classes[true]}" + ("" if ok else f" · pred: {classes[pred]}")
        grid.append(GridImage(image_png(strip, min_side=64, max_side=480), caption, ok))
    return ReportItem("Validation clips", text=f"{right} of {n} shown clips are classified right (first clip of "
                                              f"each video, frames left to right).", grid=grid)


def attention_item(model: nn.Module, clip: Tensor, meta: dict) -> ReportItem | None:
    """The last block's attention of the brightest tubelet of the middle frame (a moving digit) over every frame,
    for one validation clip ``(3, T, H, W)``; None for a model with no attention call in its last block."""
    maps, query, grid = space_time_maps(model, clip)
    if not maps:
        return None
    frames = shown_frames(clip, meta["mean"], meta["std"])
    title = f"query: tubelet (t={query[0]}, y={query[1]}, x={query[2]}) of grid {grid}, last block"
    png = png_bytes(space_time_figure(maps, frames, query, grid, title))
    text = ("Where the query tubelet (cyan box; the brightest of the middle frame: the digit) attends in every frame, "
            "for each attention call of the last block (heads averaged, each row scaled to its own maximum).")
    return ReportItem("Space-time attention (validation clip)", text=text, png=png,
                      filename="space_time_attention.png")
