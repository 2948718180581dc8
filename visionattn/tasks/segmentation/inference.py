"""Whole-image and sliding-window inference (SETR / mmseg's ``whole`` and ``slide`` test modes).

* whole: ``forward(image, padding_mask)`` once.
* slide: windows of ``window = (h, w)`` every ``stride = (s_h, s_w)`` pixels; on each axis the starts are
  ``0, s, 2s, ...`` for ``max(L - h + s - 1, 0) // s + 1`` windows, and a window that would pass the border is
  moved back to end at it (``start = max(min(start + h, L) - h, 0)``), so the last window is flush with the border
  and every pixel is covered. The logits of overlapping windows are **averaged**: summed into the full-size map and
  divided by how many windows covered each pixel. An image smaller than the window on an axis is one window of its
  own size on that axis.

``forward`` maps ``(B, C, h, w)`` and a ``(B, h, w)`` padding mask (or None) to logits ``(B, K, h, w)``; the
padding mask is cropped with each window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["window_starts", "sliding_windows", "slide_inference", "whole_inference", "INFERENCE_MODES"]

INFERENCE_MODES = ("whole", "slide")

Forward = Callable[[Tensor, Tensor | None], Tensor]


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows on one axis of ``length`` pixels (see the module docstring)."""
    if window < 1 or stride < 1:
        raise ValueError(f"sliding window: window and stride must be >= 1, got {window} and {stride}")
    if stride > window:
        raise ValueError(f"sliding window: stride {stride} > window {window} would leave pixels uncovered")
    count = max(length - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride + window, length) - window, 0) for i in range(count)]


def sliding_windows(size: Sequence[int], window: Sequence[int], stride: Sequence[int],
                    ) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` of every window over an image of ``size = (H, W)``, row by row."""
    (H, W), (wh, ww), (sh, sw) = size, window, stride
    ys, xs = window_starts(H, wh, sh), window_starts(W, ww, sw)
    return [(y, min(y + wh, H), x, min(x + ww, W)) for y in ys for x in xs]


def whole_inference(forward: Forward, image: Tensor, padding_mask: Tensor | None = None) -> Tensor:
    """``forward(image, padding_mask)``: logits ``(B, K, H, W)``."""
    return forward(image, padding_mask)


def slide_inference(forward: Forward, image: Tensor, num_classes: int, window: Sequence[int],
                    stride: Sequence[int], padding_mask: Tensor | None = None) -> Tensor:
    """Average of ``forward`` over the sliding windows of ``image`` ``(B, C, H, W)`` (see the module docstring):
    logits ``(B, num_classes, H, W)`` in float32."""
    B, _, H, W = image.shape
    total = torch.zeros(B, num_classes, H, W, dtype=torch.float32, device=image.device)
    count = torch.zeros(1, 1, H, W, dtype=torch.float32, device=image.device)
    for y0, y1, x0, x1 in sliding_windows((H, W), window, stride):
        crop_mask = None if padding_mask is None else padding_mask[:, y0:y1, x0:x1]
        logits = forward(image[:, :, y0:y1, x0:x1], crop_mask)  # (B, K, y1 - y0, x1 - x0)
        if logits.shape != (B, num_classes, y1 - y0, x1 - x0):
            raise ValueError(f"sliding window: forward gave {tuple(logits.shape)} for a window of "
                             f"{y1 - y0}x{x1 - x0}; expected {(B, num_classes, y1 - y0, x1 - x0)}")
        total[:, :, y0:y1, x0:x1] += logits.float()
        count[:, :, y0:y1, x0:x1] += 1
    return total / count
