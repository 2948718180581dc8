"""Classic filters as attention: non-local means and the bilateral filter through ``visionattn.ops.attention``.

The tutorial derives self-attention from these two filters: each output pixel is a normalised, data-dependent
average of the pixels in a window around it. Here they run *through the operator*: the window is the pattern
``Neighborhood(2r + 1, border="pad")`` (a centred box, positions beyond the grid masked), the Gaussian weights are
the softmax of the logits, and the value projection is the identity (values are the pixel colours).

Non-local means (Buades et al. 2005; scikit-image's ``denoise_nl_means``)
    ``out_i = Σ_j w_ij x_j / Σ_j w_ij`` over the ``(2s+1)²`` search window (``s = patch_distance``) with
    ``w_ij = exp(−d²(i, j) / h²)`` and ``d² = Σ_k w_k ‖x_{i+k} − x_{j+k}‖² / C`` the weighted mean squared
    difference of the ``p × p`` patches around ``i`` and ``j`` (:func:`patch_weights`: ``"uniform"``, the textbook
    mean; ``"gaussian"``, skimage's ``fast_mode=False``; ``"skimage"``, what its default fast mode really computes:
    a ``(p − 1)²`` box divided by ``p²``). Write the weighted patch as a vector ``P_i`` with ``‖P_i − P_j‖² = d²``.
    Then ``−‖P_i − P_j‖²/h² = (2 P_i·P_j − ‖P_j‖²)/h² − ‖P_i‖²/h²``; the last term is the same for every key of
    query ``i`` and cancels in the softmax, so the operator gets ``q_i = [P_i, 1]``,
    ``k_j = [2 P_j/h², −‖P_j‖²/h²]`` and ``scale = 1``. (The image's channel mean is subtracted before the patches
    are built: distances do not change, the dot products get smaller, so fp32 cancels less.)

    ``sigma`` (skimage's noise level) replaces ``d²`` by ``max(d² − 2σ²Σw, 0)``. The shift is the same for every
    key of a query and cancels in a softmax; what gives sigma its effect in skimage is the clamp, and ``max(·, 0)``
    of a distance is not a dot product. What *is* expressible: the self pair ``j = i`` has ``d² = 0`` whatever the
    data, so its clamped logit is known from the offset alone. A ``RelativeBias`` table holding ``−2σ²Σw/h²`` at
    offset 0 (zero elsewhere) makes the self weight exactly skimage's; the other pairs with ``d² < 2σ²Σw`` keep the
    weight ``exp((2σ²Σw − d²)/h²) > 1`` where skimage gives 1. skimage also drops weights with ``d²/h² > 5`` and
    uses an approximate ``exp`` (Schraudolph's, ±3 %); neither is reproduced (the softmax keeps every weight).
    Measured on the 512 × 512 ``camera`` with noise σ = 0.1 (``tests/test_classic.py``, slow test): PSNR within
    0.35 dB of skimage at the same parameters for every weighting without sigma and for the fast-mode weightings
    with ``sigma=0.1`` (h = 0.06 … 0.08); the Gaussian weighting with ``sigma=0.1, h=0.06`` is 0.93 dB below
    skimage's slow mode (which clamps every pair). Without the self-pair clamp (i.e. ``sigma=0``) those h = 0.06
    runs lose 1.4 to 3.8 dB: the self weight would dominate.

Bilateral filter (Tomasi & Manduchi 1998; scikit-image's ``denoise_bilateral``)
    ``w_ij = exp(−‖x_i − x_j‖²/(2σ_d²) − ‖I_i − I_j‖²/(2σ_r²))`` over a ``win_size²`` window. The spatial part
    depends only on the offset ``x_j − x_i``: a fixed ``RelativeBias`` table. The range part is an augmented dot
    product as above: ``q_i = [I_i, 1]``, ``k_j = [I_j/σ_r², −‖I_j‖²/(2σ_r²)]``, ``scale = 1``. Colour
    distance is the Euclidean distance of the colour vectors (the textbook filter; skimage 0.26 divides it by the
    number of channels and indexes its spatial table with the wrong stride, see the tests).

Borders (``mode``)
    ``"mask"``: the window is clipped to the image; a pixel averages only real pixels (``Neighborhood``'s
    ``border="pad"`` semantics on the image grid). ``"reflect"``, ``"symmetric"``, ``"edge"``, ``"wrap"``,
    ``"constant"`` (with ``cval``): the image is padded by the window radius with ``numpy.pad`` in that mode and
    every pixel sees a full window (``reflect`` is skimage's NL-means padding, ``constant`` with ``cval=0`` its
    bilateral default). NL-means pads once by ``s + p // 2`` so that patches read the same padding; in ``"mask"``
    mode its patches that reach beyond the image read reflect-padded pixels.

Images: ``(H, W)`` grayscale or ``(H, W, C)`` with 1 to 4 channels, any size; float (any range; ``h`` and the
sigmas are in the same units) or ``uint8`` / ``uint16`` (scaled to [0, 1] as skimage's ``img_as_float``). The
result is a float32 array of the input's shape, in the float units (so in [0, 1] for integer input).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import Neighborhood, RelativeBias, attention

__all__ = ["BORDER_MODES", "PATCH_WEIGHTINGS", "add_noise", "as_float_image", "bilateral", "bilateral_qkv",
           "bilateral_window", "nl_means", "nl_means_qkv", "patch_weights", "psnr", "spatial_table",
           "windowed_attention"]

BORDER_MODES = ("mask", "reflect", "symmetric", "edge", "wrap", "constant")
PATCH_WEIGHTINGS = ("uniform", "gaussian", "skimage")
_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_STRIP_BYTES = 1536 * 2**20  # rough working-set budget of one operator call (the blocked backend's key boxes)


# ------------------------------------------------------------------------------------------------- images
def as_float_image(image, name: str = "image") -> tuple[np.ndarray, bool]:
    """``(H, W)`` or ``(H, W, C)`` array → (float32 ``(H, W, C)``, was it 2-D). uint8/uint16 are divided by
    255/65535; floats are kept as they are. Raises TypeError/ValueError naming ``name``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W) or (H, W, C), got {type(image).__name__}")
    if image.dtype in _INT_SCALE:
        out = image.astype(np.float32) / _INT_SCALE[image.dtype]
    elif image.dtype.kind == "f":
        out = image.astype(np.float32)
    else:
        raise TypeError(f"{name} must be float, uint8 or uint16, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4):
        raise ValueError(f"{name} must be (H, W) grayscale or (H, W, C) with 1-4 channels, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must have at least one pixel, got shape {image.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(out)).sum())} NaN/inf values")
    return (out[..., None] if image.ndim == 2 else out), image.ndim == 2


def psnr(reference, image, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (skimage.metrics.peak_signal_noise_ratio); integer images are scaled
    like :func:`as_float_image`, so compare images in the same units."""
    from skimage.metrics import peak_signal_noise_ratio

    ref, _ = as_float_image(reference, "reference")
    img, _ = as_float_image(image, "image")
    if ref.shape != img.shape:
        raise ValueError(f"psnr: reference and image must have the same shape, got {ref.shape} and {img.shape}")
    return float(peak_signal_noise_ratio(ref.astype(np.float64), img.astype(np.float64), data_range=data_range))


def add_noise(image, sigma: float, seed: int = 0, clip: bool = True) -> np.ndarray:
    """``image + sigma · N(0, 1)`` (seeded, numpy's default_rng), clipped to [0, 1] unless ``clip=False``;
    float32 of the input's shape (integer images are scaled to [0, 1] first)."""
    sigma = _number(sigma, "sigma", minimum=0.0)
    x, gray = as_float_image(image)
    noisy = x + sigma * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    if clip:
        noisy = np.clip(noisy, 0.0, 1.0)
    return noisy[..., 0] if gray else noisy


def _number(value, name: str, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and (value <= minimum if strict else value < minimum)):
        bound = "" if minimum is None else f" {'>' if strict else '≥'} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return value


def _odd_size(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum or value % 2 == 0:
        raise ValueError(f"{name} must be an odd int ≥ {minimum} (a window centred on the pixel), got {value}")
    return int(value)


def _check_mode(mode: str, modes=BORDER_MODES) -> str:
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    return mode


def _pad(x: np.ndarray, width: int, mode: str, cval: float = 0.0) -> np.ndarray:
    """Pad the two spatial axes of ``(H, W, C)`` by ``width`` with ``numpy.pad`` (repeats reflections when
    ``width`` exceeds the image, as skimage does)."""
    if width == 0:
        return x
    spec = ((width, width), (width, width), (0, 0))
    if mode == "constant":
        return np.pad(x, spec, mode="constant", constant_values=cval)
    return np.pad(x, spec, mode=mode)


# ------------------------------------------------------------------------------------------------- the operator
def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, radius: int, *,
                       position: RelativeBias | None = None, margin: int = 0, backend: str = "auto",
                       max_bytes: int | None = None) -> torch.Tensor:
    """Every grid position attends to the ``(2·radius + 1)²`` box centred on it (positions beyond the grid
    masked) with logits ``q·k`` (scale 1) plus the optional relative bias: ``visionattn.ops.attention`` with
    ``Neighborhood(2·radius + 1, border="pad")``, one head.

    q, k: ``(Gh, Gw, D)``; v: ``(Gh, Gw, E)``; margin: rows/columns dropped on every side of the output (the
    padding ring, whose own outputs are not wanted). Returns ``(Gh − 2·margin, Gw − 2·margin, E)``.

    The grid is cut into row strips that carry ``radius`` extra rows on each side (a strip's kept queries see
    exactly the keys they would see on the whole grid), so memory stays near ``max_bytes`` (default 1.5 GiB).
    v may be narrower than q and k (the blocked backend runs that as matmul-softmax-matmul, no padding).
    """
    gh, gw, dim = q.shape
    pattern = Neighborhood(2 * radius + 1, border="pad")
    tile = 8  # the blocked backend's default Neighborhood tile on 2-D grids: key boxes of (8 + 2r)² per 64 queries
    row_bytes = gw * (tile + 2 * radius) ** 2 * (2 * dim * 4 / tile**2 + 8)
    rows = max(1, int((max_bytes or _STRIP_BYTES) // row_bytes) - 2 * radius)
    out = []
    for top in range(margin, gh - margin, rows):
        bottom = min(top + rows, gh - margin)
        lo, hi = max(top - radius, 0), min(bottom + radius, gh)
        part = attention(q[None, lo:hi, :, None], k[None, lo:hi, :, None], v[None, lo:hi, :, None], pattern,
                         position=position, scale=1.0, backend=backend)  # (1, hi - lo, Gw, 1, E)
        out.append(part[0, top - lo : bottom - lo, margin : gw - margin, 0, :])
    return torch.cat(out, dim=0)


# ------------------------------------------------------------------------------------------------- non-local means
def patch_weights(patch_size: int, weighting: str = "uniform") -> np.ndarray:
    """``(p, p)`` weights ``w`` of the patch distance ``d² = Σ_k w_k ‖x_{i+k} − x_{j+k}‖² / C``:

    * ``"uniform"``: ``1/p²`` everywhere (the textbook mean over the patch);
    * ``"gaussian"``: a Gaussian with σ = (p − 1)/4, summing to 1 (skimage's ``fast_mode=False``, Buades et al.);
    * ``"skimage"``: what skimage's default ``fast_mode=True`` computes with its integral images: the
      ``(p − 1)²`` pixels at offsets ``−p//2 + 1 … p//2`` (the first row and column of the patch are left out),
      each weighted ``1/p²``, so the weights sum to ``(p − 1)²/p²``.
    """
    if weighting == "gaussian":
        a = (patch_size - 1) / 4.0
        grid = np.arange(patch_size) - patch_size // 2
        w = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * a * a)) if a > 0 else np.ones((1, 1))
        return w / w.sum()
    w = np.full((patch_size, patch_size), 1.0 / patch_size**2)
    if weighting == "skimage":
        w[0, :] = w[:, 0] = 0.0
    return w


def nl_means_qkv(padded: np.ndarray, patch_size: int, h: float, weighting: str = "uniform"):
    """Queries, keys and values of non-local means on a padded image.

    padded: ``(Gh + p − 1, Gw + p − 1, C)`` float32 (already padded by ``p // 2`` for the patches).
    Returns q ``(Gh, Gw, n + 1)`` = ``[P, 1]``, k = ``[2P/h², −‖P‖²/h²]``, v ``(Gh, Gw, C)`` = the centre
    pixels, where ``P`` (``n`` = C × the number of non-zero patch weights) is the mean-centred patch scaled by
    ``sqrt(w/C)``, so that ``‖P_i − P_j‖² = d²(i, j)`` and ``q_i·k_j = −d²(i, j)/h² + ‖P_i‖²/h²`` (the last term
    is the same for every key of query ``i``)."""
    o = patch_size // 2
    c = padded.shape[2]
    x = torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None]  # (1, C, Gh + 2o, Gw + 2o)
    gh, gw = x.shape[2] - 2 * o, x.shape[3] - 2 * o
    w = patch_weights(patch_size, weighting).reshape(-1)
    keep = torch.from_numpy(np.flatnonzero(w))  # patch slots with a weight (all but skimage's first row/column)
    root = torch.from_numpy(np.sqrt(w[keep.numpy()] / c)).float()  # (n_slots,)
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    patches = F.unfold(centred, patch_size).reshape(c, patch_size * patch_size, gh * gw)  # (C, p², Gh·Gw)
    patches = patches.index_select(1, keep) * root[:, None]  # (C, n_slots, Gh·Gw)
    p = patches.reshape(c * len(keep), gh, gw).permute(1, 2, 0)  # (Gh, Gw, C·n_slots); n_slots = 0 for p = 1
    norm = p.square().sum(-1, keepdim=True)
    q = torch.cat([p, torch.ones_like(norm)], dim=-1)
    k = torch.cat([p * (2.0 / h**2), -norm / h**2], dim=-1)
    v = x[0, :, o : o + gh, o : o + gw].permute(1, 2, 0)  # (Gh, Gw, C)
    return q.contiguous(), k.contiguous(), v.contiguous()


def nl_means(image, *, patch_size: int = 7, patch_distance: int = 11, h: float = 0.1, sigma: float = 0.0,
             patch_weighting: str = "uniform", mode: str = "reflect", cval: float = 0.0,
             backend: str = "auto") -> np.ndarray:
    """Non-local means denoising through the attention operator (module docstring: formula, sigma, borders).

    image: ``(H, W)`` or ``(H, W, C)``, float or uint8/uint16. patch_size: odd ``p`` (skimage's default 7);
    patch_distance: search radius ``s`` (window ``2s + 1``, default 11); h: filtering parameter (> 0);
    sigma: noise standard deviation (≥ 0, self pair clamped as skimage; see the module docstring);
    patch_weighting: ``"uniform"`` (skimage fast mode) or ``"gaussian"`` (slow mode); mode: border handling of the
    search window. Returns float32 of the input's shape.
    """
    x, gray = as_float_image(image)
    p = _odd_size(patch_size, "patch_size")
    if isinstance(patch_distance, bool) or not isinstance(patch_distance, (int, np.integer)) or patch_distance < 0:
        raise ValueError(f"patch_distance must be an int ≥ 0 (search window 2·s + 1), got {patch_distance!r}")
    s = int(patch_distance)
    h = _number(h, "h", minimum=0.0, strict=True)
    sigma = _number(sigma, "sigma", minimum=0.0)
    if patch_weighting not in PATCH_WEIGHTINGS:
        raise ValueError(f"patch_weighting must be one of {PATCH_WEIGHTINGS}, got {patch_weighting!r}")
    _check_mode(mode)
    cval = _number(cval, "cval")
    ring = 0 if mode == "mask" else s
    padded = _pad(x, p // 2, "reflect") if mode == "mask" else _pad(x, s + p // 2, mode, cval)
    q, k, v = nl_means_qkv(padded, p, h, patch_weighting)
    position = None
    if sigma > 0:  # skimage's clamp max(d² − 2σ², 0) on the one pair whose d² is known: the pixel itself
        table = torch.zeros(1, 2 * s + 1, 2 * s + 1)
        table[0, s, s] = -2.0 * sigma**2 * float(patch_weights(p, patch_weighting).sum()) / h**2
        position = RelativeBias(table)
    out = windowed_attention(q, k, v, s, position=position, margin=ring, backend=backend).numpy()
    return out[..., 0] if gray else out


# ------------------------------------------------------------------------------------------------- bilateral
def bilateral_window(sigma_spatial: float, win_size: int | None = None) -> int:
    """skimage's default window: ``max(5, 2·ceil(3σ_d) + 1)``; a given ``win_size`` must be odd."""
    if win_size is None:
        return max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
    return _odd_size(win_size, "win_size")


def spatial_table(win_size: int, sigma_spatial: float) -> torch.Tensor:
    """``(1, win, win)`` relative-bias table ``−(dy² + dx²)/(2σ_d²)`` for offsets ``|dy|, |dx| ≤ win // 2``."""
    r = win_size // 2
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    return (-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma_spatial**2)).float()[None]


def bilateral_qkv(x: np.ndarray, sigma_color: float):
    """q ``(H, W, C + 1)`` = ``[I, 1]``, k = ``[I/σ_r², −‖I‖²/(2σ_r²)]`` (I mean-centred), v = the pixels;
    ``q_i·k_j = −‖I_i − I_j‖²/(2σ_r²) + ‖I_i‖²/(2σ_r²)``."""
    v = torch.from_numpy(np.ascontiguousarray(x))
    i = v - v.mean(dim=(0, 1), keepdim=True)
    norm = i.square().sum(-1, keepdim=True)
    q = torch.cat([i, torch.ones_like(norm)], dim=-1)
    k = torch.cat([i / sigma_color**2, -norm / (2 * sigma_color**2)], dim=-1)
    return q, k, v


def bilateral(image, *, sigma_spatial: float = 1.0, sigma_color: float | None = None, win_size: int | None = None,
              mode: str = "mask", cval: float = 0.0, spatial_kernel=None, backend: str = "auto") -> np.ndarray:
    """Bilateral filter through the attention operator (module docstring: formula, borders).

    image: ``(H, W)`` or ``(H, W, C)``, float or uint8/uint16. sigma_spatial: σ_d in pixels (> 0);
    sigma_color: σ_r in image units (> 0; None = the image's standard deviation, as skimage); win_size: odd
    window (None = ``max(5, 2·ceil(3σ_d) + 1)``); mode: borders (default ``"mask"``: only real pixels);
    spatial_kernel: optional ``(win, win)`` array of positive spatial weights replacing the Gaussian (its log is
    the relative-bias table; ``win_size`` and ``sigma_spatial`` are then unused). Returns float32 of the input's
    shape. A constant image is returned unchanged (every average is that value).
    """
    x, gray = as_float_image(image)
    if spatial_kernel is None:
        sigma_spatial = _number(sigma_spatial, "sigma_spatial", minimum=0.0, strict=True)
        win = bilateral_window(sigma_spatial, win_size)
        table = spatial_table(win, sigma_spatial)
    else:
        kernel = np.asarray(spatial_kernel, dtype=np.float64)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            raise ValueError(f"spatial_kernel must be a square (win, win) array with odd win, got shape {kernel.shape}")
        if not (np.isfinite(kernel).all() and (kernel > 0).all()):
            raise ValueError("spatial_kernel must hold finite weights > 0 (their log is the relative-bias table)")
        win = kernel.shape[0]
        table = torch.from_numpy(np.log(kernel)).float()[None]
    _check_mode(mode)
    cval = _number(cval, "cval")
    if sigma_color is not None:
        sigma_color = _number(sigma_color, "sigma_color", minimum=0.0, strict=True)
    if x.min() == x.max():  # constant image: every weighted average is that value (and its std is 0)
        return x[..., 0].copy() if gray else x.copy()
    if sigma_color is None:
        sigma_color = float(x.astype(np.float64).std())
    r = win // 2
    ring = 0 if mode == "mask" else r
    q, k, v = bilateral_qkv(_pad(x, ring, mode, cval), sigma_color)
    out = windowed_attention(q, k, v, r, position=RelativeBias(table), margin=ring, backend=backend).numpy()
    return out[..., 0] if gray else out
