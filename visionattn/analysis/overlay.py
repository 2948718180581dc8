"""Figures of attention maps: maps overlaid on the image, and DINO-style thresholded masks.

:func:`threshold_mask` is the mask of DINO's ``visualize_attention.py`` (Caron et al. 2021): per map, keep the
smallest set of keys holding ``fraction`` of the attention mass (sort the normalised weights ascending, keep those
whose cumulative sum exceeds ``1 - fraction``). Figures use ``matplotlib.figure.Figure`` directly (no pyplot state,
no display backend needed) and are written as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["attention_figure", "save_attention_figure", "save_image", "threshold_mask", "to_uint8_image"]


def threshold_mask(weights: Tensor, fraction: float = 0.6, dims: int = 1) -> Tensor:
    """Bool mask of the same shape as ``weights`` keeping, in each map over the last ``dims`` axes, the smallest set
    of entries whose normalised weights sum to at least ``fraction`` (largest weights first; DINO's
    ``--threshold``). ``dims`` 1 for rows ``(..., N)``, 2 for token maps ``(..., h, w)``. An all-zero map keeps
    nothing. ``fraction`` in (0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"threshold fraction: expected a number in (0, 1], got {fraction!r}")
    if dims not in (1, 2) or weights.ndim < dims:
        raise ValueError(f"threshold_mask: dims must be 1 or 2 (≤ weights.ndim={weights.ndim}), got {dims}")
    flat = weights.float().flatten(-dims) if dims == 2 else weights.float()  # (..., N)
    total = flat.sum(-1, keepdim=True)
    values, order = torch.sort(flat / total.clamp_min(torch.finfo(torch.float32).tiny), dim=-1)  # ascending
    keep_sorted = values.cumsum(-1) > (1.0 - fraction) + 1e-6  # the mass after an entry is < fraction: keep it
    keep_sorted &= values > 0
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return keep.reshape(weights.shape)


def to_uint8_image(image: Tensor | np.ndarray) -> np.ndarray:
    """A ``(3, H, W)`` float image in [0, 1] (tensor or array) → ``(H, W, 3)`` uint8; uint8 ``(H, W, 3)`` passes."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 3:
        return array
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"to_uint8_image: expected a (3, H, W) float image in [0, 1], got shape {array.shape}")
    return np.rint(np.clip(array.transpose(1, 2, 0), 0.0, 1.0) * 255).astype(np.uint8)


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 ``(H, W, 3)`` image as PNG."""
    from PIL import Image

    Image.fromarray(to_uint8_image(image)).save(path)
    return Path(path)


def attention_figure(image: np.ndarray, maps: np.ndarray, labels: Sequence[str], masks: np.ndarray | None = None,
                     point: tuple[int, int] | None = None, title: str = "", threshold: float | None = None):
    """A figure: the image, then each map overlaid on it (each scaled to its own maximum), and under each map its
    thresholded mask when ``masks`` is given. image: uint8 ``(H, W, 3)``; maps: ``(K, H, W)`` float; labels: K
    names; masks: bool ``(K, H, W)``; point: the query pixel ``(x, y)`` marked with a cross (None for CLS)."""
    from matplotlib.figure import Figure

    image = to_uint8_image(image)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[1:] != image.shape[:2] or len(labels) != len(maps):
        raise ValueError(f"attention_figure: expected maps (K, {image.shape[0]}, {image.shape[1]}) with K labels, got "
                         f"maps {maps.shape} and {len(labels)} labels")
    rows, cols = (1 if masks is None else 2), len(maps) + 1
    panel = max(1.3, min(2.4, 26.0 / cols))
    fig = Figure(figsize=(panel * cols, panel * rows + (0.5 if title else 0.1)), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    gray = image.mean(-1)
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("input", fontsize=8)
    if point is not None:
        axes[0, 0].plot([point[0]], [point[1]], marker="+", color="red", markersize=10, markeredgewidth=2)
    for i, (m, label) in enumerate(zip(maps, labels, strict=True)):
        ax = axes[0, i + 1]
        ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
        ax.imshow(m / max(float(m.max()), 1e-12), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        ax.set_title(f"{label} (max {float(m.max()):.2g})", fontsize=8)
        if point is not None:
            ax.plot([point[0]], [point[1]], marker="+", color="cyan", markersize=8, markeredgewidth=1.5)
        if masks is not None:
            ax = axes[1, i + 1]
            ax.imshow(_blend(image, np.asarray(masks[i], dtype=bool)))
            if masks[i].any() and not masks[i].all():
                ax.contour(np.asarray(masks[i], dtype=np.float32), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_title(f"top {round(100 * threshold)}% of the mass" if threshold else "mask", fontsize=7)
    if masks is not None:
        axes[1, 0].text(0.0, 0.5, "DINO-style masks:\nsmallest key set\nholding the mass", fontsize=7,
                        transform=axes[1, 0].transAxes, va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(h_pad=1.2)
    return fig


def _blend(image: np.ndarray, mask: np.ndarray, color=(0.0, 0.8, 1.0), alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float32) / 255.0
    tint = np.asarray(color, dtype=np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint
    out[~mask] *= 0.45
    return out


def save_attention_figure(path: str | Path, *args, **kwargs) -> Path:
    """:func:`attention_figure` written to ``path`` as PNG."""
    fig = attention_figure(*args, **kwargs)
    fig.savefig(path)
    return Path(path)
