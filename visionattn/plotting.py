"""Off-screen pictures as PNG bytes, for run reports and task figures.

Everything is rendered with matplotlib's Agg canvas on a ``Figure`` object, never ``pyplot``, so no global backend is
switched and nothing opens a window; images go through PIL.
"""

from __future__ import annotations

import io
import math

import numpy as np

__all__ = ["figure", "png_bytes", "image_png", "to_uint8_hwc"]

_PNG_META = {"Software": None}  # matplotlib otherwise stamps its name and URL into every PNG


def figure(width: float, height: float):
    """A matplotlib ``Figure`` of ``width × height`` inches at 100 dpi with an Agg canvas (constrained layout)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (no software metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_META)
    return buf.getvalue()


def to_uint8_hwc(image) -> np.ndarray:
    """An image ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)``, float with values in [0, 1] (tensor or array), as uint8
    ``(H, W, 3)`` or ``(H, W, 1)``. Display only: values outside [0, 1] (e.g. still normalised) are min-max rescaled
    rather than clipped; NaN becomes 0."""
    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"image: expected shape (3, H, W), (1, H, W) or (H, W), got {tuple(arr.shape)}")
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.01 or hi > 1.01:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    arr = np.clip(arr, 0.0, 1.0)
    return (arr.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)  # (H, W, C)


def image_png(image, min_side: int = 96, max_side: int = 160) -> bytes:
    """A PNG of one image (see :func:`to_uint8_hwc` for the accepted forms; a uint8 ``(H, W, 3)`` array is taken as
    is). Small images are enlarged with nearest-neighbour (8×8 digits stay crisp), large ones reduced."""
    from PIL import Image

    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        pixels = image
    else:
        pixels = to_uint8_hwc(image)
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    w, h = img.size
    short, long_ = min(w, h), max(w, h)
    if short < min_side:
        scale = max(1, math.ceil(min_side / short))
        scale = max(1, min(scale, max(1, (max_side * 2) // long_)))
        img = img.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    elif long_ > max_side:
        scale = max_side / long_
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
