"""Attention explorer: a self-contained HTML page (no server, no network) where a click on any pixel of an image
shows the attention of that query, per layer and per head (or the mean of heads).

Data contract (:class:`ExplorerLayer`): ``attn`` is float32 ``(heads, hq*wq, hk*wk)``; row ``r`` is the attention of
the query at cell ``r`` of ``q_grid`` (raster order; the ``hq x wq`` cells evenly cover the image, so pixel
``(x, y)`` lies in cell ``(y*hq // H, x*wq // W)``) over the cells of ``kv_grid`` (raster order, also evenly
covering the image). Rows are non-negative and need not sum to 1.

Embedding (precision): each row is stored as uint8 codes ``round(255 * a / max(row))`` plus its float32 maximum,
so a decoded value ``code * max / 255`` is within ``max(row) / 510`` of the input (a zero row stays zero). The
codes of a layer, C-order ``(heads, nq, nk)``, are zlib-compressed then base64-encoded; the row maxima are
little-endian float32 ``(heads, nq)`` in base64. The page decodes them with the browser's ``DecompressionStream``
(Chrome/Edge 80+, Firefox 113+, Safari 16.4+). The image is embedded as a base64 PNG.

The page's displayed map is the selected head's row (or the mean over heads of the decoded rows), painted on a
canvas at ``kv_grid`` resolution with the colour map, each map normalised to its own maximum, and stacked over the
image with adjustable opacity. For tests the main canvas ``#heat`` carries ``data-ready``, ``data-layer``,
``data-head`` (an index or ``mean``) and ``data-query`` (the raster index of the query cell), and
``window.explorerState()`` returns the selection and the displayed map's values.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLORMAP = "inferno"


@dataclass(frozen=True)
class ExplorerLayer:
    """One layer of attention maps for the explorer.

    name: shown in the layer selector. q_grid: ``(hq, wq)`` query cells over the image. kv_grid: ``(hk, wk)`` key
    cells over the image. attn: float32 ``(heads, hq*wq, hk*wk)``, non-negative, finite (see the module doc).
    """

    name: str
    q_grid: tuple[int, int]
    kv_grid: tuple[int, int]
    attn: np.ndarray


def write_explorer(path, image: np.ndarray, layers: list[ExplorerLayer], title: str = "") -> Path:
    """Write the explorer page for ``image`` (uint8 ``(H, W, 3)``) and ``layers`` to ``path`` (atomically: a
    temporary file in the same folder, then ``os.replace``; missing parent folders are created).

    Returns the path written. Raises ValueError/TypeError naming the argument, the expected and the received value.
    """
    _check_image(image)
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"write_explorer: layers must be a list of ExplorerLayer, got {type(layers).__name__}")
    if len(layers) == 0:
        raise ValueError("write_explorer: layers is empty; expected at least one ExplorerLayer")
    if not isinstance(title, str):
        raise TypeError(f"write_explorer: title must be a str, got {type(title).__name__}")
    height, width = image.shape[:2]
    encoded = [_encode_layer(i, layer, (height, width)) for i, layer in enumerate(layers)]
    data = {
        "title": title,
        "image": {"width": int(width), "height": int(height), "png": _png_base64(image)},
        "colormap": {"name": COLORMAP, "rgb": _b64(_colormap_lut(COLORMAP).tobytes())},
        "encoding": "codes: base64(zlib(uint8 (heads, nq, nk) = round(255*a/row_max))); "
                    "row_max: base64(float32 little-endian (heads, nq)); |error| <= row_max/510",
        "layers": encoded,
    }
    page = render_page(data, title or "attention explorer")
    return _atomic_write_text(Path(path), page)


def render_page(data: dict, title: str) -> str:
    """The page's HTML text with ``data`` (the JSON payload described in the module doc) and ``title`` embedded."""
    from .explorer_page import PAGE_TEMPLATE

    # "<" never appears raw inside the JSON script block, so no "</script>" or "<!--" can end it early.
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    fills = {"__TITLE__": html.escape(title), "__DATA_JSON__": payload}
    return re.sub("__TITLE__|__DATA_JSON__", lambda m: fills[m.group(0)], PAGE_TEMPLATE)


# ------------------------------------------------------------------------------------------------ encoding


def quantise_rows(attn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float ``(heads, nq, nk)`` non-negative -> (uint8 codes ``(heads, nq, nk)``, float32 row maxima ``(heads, nq)``)
    with ``codes = round(255 * attn / row_max)`` (0 where the row is all zero)."""
    row_max = attn.max(axis=-1).astype(np.float32)  # (heads, nq)
    scale = np.where(row_max > 0, 255.0 / np.where(row_max > 0, row_max, 1.0).astype(np.float64), 0.0)
    codes = np.rint(attn.astype(np.float64) * scale[..., None])  # (heads, nq, nk) in [0, 255]
    return np.clip(codes, 0, 255).astype(np.uint8), row_max


def _encode_layer(index: int, layer: ExplorerLayer, image_hw: tuple[int, int]) -> dict:
    q_grid, kv_grid, heads = _check_layer(index, layer, image_hw)
    codes, row_max = quantise_rows(layer.attn)
    return {
        "name": layer.name,
        "q_grid": list(q_grid),
        "kv_grid": list(kv_grid),
        "heads": heads,
        "codes": _b64(zlib.compress(np.ascontiguousarray(codes).tobytes(), 6)),
        "row_max": _b64(row_max.astype("<f4").tobytes()),
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _png_base64(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    # uint8 (H, W, 3) -> an RGB image
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return _b64(buf.getvalue())


def _colormap_lut(name: str) -> np.ndarray:
    """uint8 ``(256, 3)`` RGB table of a matplotlib colour map (index 0 = zero, 255 = the map's maximum)."""
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))  # (256, 4) floats in [0, 1]
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ validation


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"write_explorer: image must be a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"write_explorer: image must have shape (H, W, 3) with H, W >= 1, got {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"write_explorer: image must be uint8, got {image.dtype}")


def _check_grid(where: str, grid) -> tuple[int, int]:
    ok = isinstance(grid, (tuple, list)) and len(grid) == 2 and all(
        isinstance(g, (int, np.integer)) and not isinstance(g, bool) and g >= 1 for g in grid)
    if not ok:
        raise ValueError(f"{where} must be two positive ints (rows, cols), got {grid!r}")
    return int(grid[0]), int(grid[1])


def _check_layer(index: int, layer, image_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int], int]:
    where = f"write_explorer: layers[{index}]"
    if not isinstance(layer, ExplorerLayer):
        raise TypeError(f"{where} must be an ExplorerLayer, got {type(layer).__name__}")
    if not isinstance(layer.name, str):
        raise TypeError(f"{where}.name must be a str, got {type(layer.name).__name__}")
    q_grid = _check_grid(f"{where}.q_grid", layer.q_grid)
    kv_grid = _check_grid(f"{where}.kv_grid", layer.kv_grid)
    height, width = image_hw
    if q_grid[0] > height or q_grid[1] > width:
        raise ValueError(f"{where}.q_grid {q_grid} has more cells than the image has pixels (H, W) = {image_hw}; "
                         "every query cell must contain at least one pixel")
    attn = layer.attn
    if not isinstance(attn, np.ndarray):
        raise TypeError(f"{where}.attn must be a numpy float32 array, got {type(attn).__name__}")
    if attn.dtype != np.float32:
        raise TypeError(f"{where}.attn must be float32, got {attn.dtype} (use .astype(np.float32))")
    nq, nk = q_grid[0] * q_grid[1], kv_grid[0] * kv_grid[1]
    if attn.ndim != 3 or attn.shape[0] < 1 or attn.shape[1:] != (nq, nk):
        raise ValueError(f"{where}.attn must have shape (heads >= 1, hq*wq, hk*wk) = (heads, {nq}, {nk}) for "
                         f"q_grid {q_grid} and kv_grid {kv_grid}, got {attn.shape}")
    if not np.isfinite(attn).all():
        bad = int((~np.isfinite(attn)).sum())
        raise ValueError(f"{where}.attn must be finite, got {bad} NaN/inf values")
    if (attn < 0).any():
        raise ValueError(f"{where}.attn must be non-negative, got minimum {float(attn.min()):.3g}")
    return q_grid, kv_grid, int(attn.shape[0])


# ------------------------------------------------------------------------------------------------ writing


def _atomic_write_text(path: Path, text: str) -> Path:
    if path.is_dir():
        raise ValueError(f"write_explorer: path {str(path)!r} is a directory; expected an .html file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a page is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
