"""Non-local means and the bilateral filter written as attention (visionattn.analysis.classic).

(1) Against direct implementations written here (explicit per-pixel windows and patches, float64): exact within fp32
tolerance on small odd-sized gray and colour images, every border mode, tiny images that the padding reflects many
times. (2) Against scikit-image on its bundled photos with seeded Gaussian noise: PSNR within 0.5 dB at the same
parameters, plus exact-semantics checks that show what skimage computes. (3) Errors for bad images and parameters.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visionattn.analysis.classic import add_noise, bilateral, nl_means, psnr, windowed_attention
from visionattn.ops import Neighborhood, attention, intercept_attention

skimage_data = pytest.importorskip("skimage.data")
restoration = pytest.importorskip("skimage.restoration")


# ------------------------------------------------------------------------------------------------- direct twins
def _weights(p: int, weighting: str) -> np.ndarray:
    """Patch weights, written out again: uniform 1/p², Gaussian σ=(p-1)/4 normalised, skimage's (p-1)² box / p²."""
    w = np.zeros((p, p))
    for a in range(p):
        for b in range(p):
            da, db = a - p // 2, b - p // 2
            if weighting == "uniform":
                w[a, b] = 1.0 / p**2
            elif weighting == "skimage":
                w[a, b] = 0.0 if a == 0 or b == 0 else 1.0 / p**2
            else:
                s = (p - 1) / 4
                w[a, b] = math.exp(-(da * da + db * db) / (2 * s * s)) if s > 0 else 1.0
    return w if weighting != "gaussian" else w / w.sum()


def _pad_spec(mode: str, width: int, cval: float) -> dict:
    return dict(mode=mode, constant_values=cval) if mode == "constant" else dict(mode=mode)


def nl_means_direct(img, p=3, s=2, h=0.1, sigma=0.0, weighting="uniform", mode="reflect", cval=0.0, clamp="self"):
    """Per pixel i, per candidate j of the (2s+1)² window: d² = Σ_k w_k ‖x_{i+k} − x_{j+k}‖² / C, weight
    exp(−(d² − 2σ²Σw)/h²), with max(·, 0) applied on the self pair (ours) or on every pair (skimage)."""
    x = np.asarray(img, dtype=np.float64)
    x = x[..., None] if x.ndim == 2 else x
    H, W, C = x.shape
    o = p // 2
    w = _weights(p, weighting)
    ring = 0 if mode == "mask" else s
    if mode == "mask":
        padded = np.pad(x, ((o, o), (o, o), (0, 0)), mode="reflect")
    else:
        padded = np.pad(x, ((s + o, s + o), (s + o, s + o), (0, 0)), **_pad_spec(mode, s + o, cval))
    out = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            pi = padded[i + ring : i + ring + p, j + ring : j + ring + p]  # patch centred on pixel (i, j)
            total, acc = 0.0, np.zeros(C)
            for dy in range(-s, s + 1):
                for dx in range(-s, s + 1):
                    if mode == "mask" and not (0 <= i + dy < H and 0 <= j + dx < W):
                        continue
                    pj = padded[i + dy + ring : i + dy + ring + p, j + dx + ring : j + dx + ring + p]
                    d2 = float((w[..., None] * (pi - pj) ** 2).sum()) / C - 2 * sigma**2 * w.sum()
                    if clamp == "all" or (dy == 0 and dx == 0):
                        d2 = max(d2, 0.0)
                    weight = math.exp(-d2 / h**2)
                    total += weight
                    acc += weight * pj[o, o]
            out[i, j] = acc / total
    return out[..., 0] if np.ndim(img) == 2 else out


def bilateral_direct(img, sigma_spatial=1.0, sigma_color=0.2, win=5, mode="mask", cval=0.0, kernel=None):
    """Per pixel i, per j in the win × win window: exp(−‖Δx‖²/(2σ_d²) − ‖I_i − I_j‖²/(2σ_r²)), or kernel[Δ] for
    the spatial factor; mode 'mask' skips pixels outside the image, other modes read numpy.pad values."""
    x = np.asarray(img, dtype=np.float64)
    x = x[..., None] if x.ndim == 2 else x
    H, W, C = x.shape
    r = win // 2
    padded = x if mode == "mask" else np.pad(x, ((r, r), (r, r), (0, 0)), **_pad_spec(mode, r, cval))
    ring = 0 if mode == "mask" else r
    out = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            centre = padded[i + ring, j + ring]
            total, acc = 0.0, np.zeros(C)
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    y, z = i + ring + dy, j + ring + dx
                    if not (0 <= y < padded.shape[0] and 0 <= z < padded.shape[1]):
                        continue
                    value = padded[y, z]
                    spatial = kernel[dy + r, dx + r] if kernel is not None else math.exp(
                        -(dy * dy + dx * dx) / (2 * sigma_spatial**2))
                    weight = spatial * math.exp(-float(((centre - value) ** 2).sum()) / (2 * sigma_color**2))
                    total += weight
                    acc += weight * value
            out[i, j] = acc / total
    return out[..., 0] if np.ndim(img) == 2 else out


def _image(shape, seed=0):
    """Seeded piecewise-smooth test image: a ramp, a bright square and noise (so patches differ)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.2 + 0.5 * (yy + xx) / (h + w) + 0.3 * ((yy > h // 3) & (xx > w // 2))
    base = base if len(shape) == 2 else base[..., None] * np.array([1.0, 0.7, 0.4])[: shape[2]]
    return (base + 0.08 * rng.standard_normal(shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- (1) exact
@pytest.mark.parametrize(
    "shape, weighting, mode, sigma",
    [
        ((9, 11), "uniform", "reflect", 0.0),
        ((9, 11), "gaussian", "mask", 0.0),
        ((9, 11), "skimage", "constant", 0.06),
        ((7, 10, 3), "uniform", "reflect", 0.06),
        ((7, 10, 3), "gaussian", "edge", 0.0),
        ((8, 9, 3), "skimage", "mask", 0.0),
        ((10, 7), "uniform", "wrap", 0.0),
        ((10, 7), "uniform", "symmetric", 0.03),
    ],
)
def test_nl_means_equals_direct(shape, weighting, mode, sigma):
    img = _image(shape, seed=len(shape) + shape[0])
    params = dict(p=3 if weighting != "skimage" else 5, s=2, h=0.12, sigma=sigma, weighting=weighting, mode=mode,
                  cval=0.3)
    want = nl_means_direct(img, **params)
    got = nl_means(img, patch_size=params["p"], patch_distance=2, h=0.12, sigma=sigma, patch_weighting=weighting,
                   mode=mode, cval=0.3)
    assert got.shape == img.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=3e-5, rtol=0)
    assert np.abs(got - img).max() > 1e-3  # it did filter


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 6), (3, 2, 3)])
def test_nl_means_tiny_images_reflect_many_times(shape):
    """Padding wider than the image (p=5, s=4 on 1-3 pixels): numpy's repeated reflection, as skimage."""
    img = _image(shape, seed=3)
    want = nl_means_direct(img, p=5, s=4, h=0.2)
    np.testing.assert_allclose(nl_means(img, patch_size=5, patch_distance=4, h=0.2), want, atol=3e-5, rtol=0)


def test_patch_size_one_and_no_search():
    """p = 1: uniform is a range filter (direct twin); skimage's box is empty, so every weight is 1 and the result is
    the plain window mean, as skimage's own; s = 0 returns the image."""
    img = _image((7, 9, 3), seed=7)
    np.testing.assert_allclose(nl_means(img, patch_size=1, patch_distance=2, h=0.2),
                               nl_means_direct(img, p=1, s=2, h=0.2), atol=3e-5, rtol=0)
    box = nl_means(img, patch_size=1, patch_distance=1, patch_weighting="skimage")
    padded = np.pad(img.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    mean = sum(padded[1 + dy : 8 + dy, 1 + dx : 10 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    np.testing.assert_allclose(box, mean, atol=2e-6, rtol=0)
    theirs = restoration.denoise_nl_means(img.astype(np.float64), patch_size=1, patch_distance=1, channel_axis=-1)
    np.testing.assert_allclose(box, theirs, atol=2e-6, rtol=0)
    np.testing.assert_allclose(nl_means(img, patch_distance=0), img, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "shape, mode, win, sigma_color",
    [
        ((9, 11), "mask", None, 0.15),
        ((9, 11), "reflect", 7, None),
        ((7, 10, 3), "mask", 3, 0.2),
        ((7, 10, 3), "constant", None, 0.25),
        ((10, 7), "wrap", 5, 0.1),
        ((3, 2), "mask", 9, 0.3),  # window wider than the image
    ],
)
def test_bilateral_equals_direct(shape, mode, win, sigma_color):
    img = _image(shape, seed=shape[1])
    sigma_spatial = 1.3
    used_win = win or max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
    used_color = sigma_color or float(img.astype(np.float64).std())
    want = bilateral_direct(img, sigma_spatial, used_color, used_win, mode=mode, cval=0.4)
    got = bilateral(img, sigma_spatial=sigma_spatial, sigma_color=sigma_color, win_size=win, mode=mode, cval=0.4)
    assert got.shape == img.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    assert np.abs(got - img).max() > 1e-3


def test_bilateral_custom_spatial_kernel_equals_direct():
    img = _image((8, 9, 3), seed=5)
    kernel = np.random.default_rng(1).uniform(0.05, 1.0, (5, 5))
    want = bilateral_direct(img, sigma_color=0.2, win=5, mode="reflect", kernel=kernel)
    got = bilateral(img, sigma_color=0.2, spatial_kernel=kernel, mode="reflect")
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_logits_are_the_gaussian_weights():
    """The call the operator receives: Neighborhood(2s+1, border='pad'), scale 1, values = the pixels, and
    q_i·k_j = −d²(i, j)/h² + c_i (a per-query constant) for every pair in the window."""
    img = _image((6, 7), seed=2)
    calls = []

    def capture(call):
        calls.append(call)
        return torch.zeros(*call.q.shape[:-1], call.v.shape[-1])

    with intercept_attention(capture):
        nl_means(img, patch_size=3, patch_distance=1, h=0.2, mode="mask")
    (call,) = calls
    assert call.pattern == Neighborhood(3, border="pad") and call.scale == 1.0 and call.position is None
    q, k, v = call.q[0, :, :, 0].double(), call.k[0, :, :, 0].double(), call.v[0, :, :, 0].double()
    np.testing.assert_allclose(v[..., 0].numpy(), img, atol=1e-7)  # identity value projection (zero-padded width)
    padded = np.pad(img.astype(np.float64), 1, mode="reflect")
    for (i, j), (y, x) in [((2, 3), (1, 2)), ((2, 3), (3, 4)), ((0, 0), (1, 1)), ((5, 6), (4, 6))]:
        d2 = ((padded[i : i + 3, j : j + 3] - padded[y : y + 3, x : x + 3]) ** 2).mean()
        self_logit = float(q[i, j] @ k[i, j])
        np.testing.assert_allclose(float(q[i, j] @ k[y, x]) - self_logit, -d2 / 0.2**2, atol=1e-4)


def test_backends_agree_with_the_reference():
    """The blocked fast path and the dense reference backend give the same filter."""
    img = _image((9, 8, 3), seed=4)
    fast = nl_means(img, patch_size=3, patch_distance=2, h=0.15, sigma=0.05, backend="blocked")
    dense = nl_means(img, patch_size=3, patch_distance=2, h=0.15, sigma=0.05, backend="reference")
    np.testing.assert_allclose(fast, dense, atol=2e-6, rtol=0)
    fast = bilateral(img, sigma_color=0.2, backend="blocked")
    np.testing.assert_allclose(fast, bilateral(img, sigma_color=0.2, backend="reference"), atol=2e-6, rtol=0)


def test_row_strips_equal_one_call():
    """windowed_attention cut into many strips (tiny memory budget) = one attention call on the whole grid."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(13, 10, 5, generator=g) for _ in range(3))
    whole = attention(q[None, :, :, None], k[None, :, :, None], v[None, :, :, None], Neighborhood(5, border="pad"),
                      scale=1.0)[0, :, :, 0]
    for margin in (0, 2):
        strips = windowed_attention(q, k, v, 2, margin=margin, max_bytes=1)
        one = windowed_attention(q, k, v, 2, margin=margin, max_bytes=2**40)
        want = whole[margin : 13 - margin, margin : 10 - margin]
        torch.testing.assert_close(strips, want, atol=1e-6, rtol=0)
        torch.testing.assert_close(one, want, atol=1e-6, rtol=0)


def test_integer_images_are_scaled():
    img = (_image((7, 9), seed=6).clip(0, 1) * 255).round().astype(np.uint8)
    got = nl_means(img, patch_size=3, patch_distance=2, h=0.1)
    assert got.dtype == np.float32 and 0.0 <= got.min() and got.max() <= 1.0
    np.testing.assert_allclose(got, nl_means(img / 255.0, patch_size=3, patch_distance=2, h=0.1), atol=1e-6)
    img16 = img.astype(np.uint16) * 257
    np.testing.assert_allclose(bilateral(img16, sigma_color=0.1), bilateral(img / 255.0, sigma_color=0.1), atol=1e-6)


def test_constant_image_and_noise_helpers():
    flat = np.full((5, 6), 0.4, dtype=np.float32)
    np.testing.assert_array_equal(bilateral(flat), flat)
    np.testing.assert_allclose(nl_means(flat, patch_size=3, patch_distance=1), flat, atol=1e-6)
    a, b = add_noise(flat, 0.1, seed=3), add_noise(flat, 0.1, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, add_noise(flat, 0.1, seed=4)) and 0 <= a.min() and a.max() <= 1
    assert abs(float((a - flat).std()) - 0.1) < 0.04
    assert psnr(flat, flat + 0.1) == pytest.approx(20.0, abs=1e-4)


# ------------------------------------------------------------------------------------------------- (2) skimage
def _noisy(image, sigma=0.1, seed=0):
    clean = image.astype(np.float64) / 255.0
    return clean, add_noise(clean, sigma, seed=seed).astype(np.float64)


def skimage_spatial_kernel(win: int, sigma: float) -> np.ndarray:
    """The spatial weights skimage 0.26's denoise_bilateral really applies: its lookup table is built on
    ``arange(-win // 2, win // 2 + 1)`` (win + 1 points for odd win) but read as ``lut[kr * win + kc]``."""
    g = np.arange(-win // 2, win // 2 + 1)
    lut = np.exp(-0.5 * (g[:, None] ** 2 + g[None, :] ** 2) / sigma**2).ravel()
    return lut[: win * win].reshape(win, win)


def test_skimage_fast_nl_means_semantics():
    """With h = 0.5 skimage's weight cut-off (d²/h² > 5) cannot fire on [0, 1] images (d² ≤ 1); then
    weighting='skimage' is skimage's fast mode up to its approximate exp (Schraudolph's, ±3 % per weight)."""
    clean, noisy = _noisy(skimage_data.camera()[200:248, 180:236])
    ours = nl_means(noisy, h=0.5, patch_weighting="skimage")
    theirs = restoration.denoise_nl_means(noisy, h=0.5)
    assert np.abs(ours - theirs).max() < 8e-3
    assert np.abs(ours - nl_means(noisy, h=0.5)).max() > 0.03  # the weighting matters: this test can fail


@pytest.mark.parametrize(
    "weighting, h, sigma, two_sided",
    [
        ("skimage", 0.1, 0.0, True),  # the same patch distance as skimage's fast mode
        ("skimage", 0.08, 0.0, True),
        ("gaussian", 0.1, 0.0, True),  # the same patch distance as skimage's slow mode
        ("gaussian", 0.08, 0.1, True),
        ("uniform", 0.1, 0.0, True),  # the textbook p × p mean
        ("uniform", 0.08, 0.1, False),  # measured: ours 28.03 dB, skimage 27.30 dB (clamp on the self pair only)
    ],
)
def test_nl_means_psnr_matches_skimage_on_camera_crop(weighting, h, sigma, two_sided):
    """PSNR within 0.5 dB of skimage at the same parameters (one-sided where ours is better by design: the
    clamp max(d² − 2σ², 0) is applied on the self pair only, so near-duplicate patches weigh more than in skimage)."""
    clean, noisy = _noisy(skimage_data.camera()[160:288, 160:288])
    ours = nl_means(noisy, h=h, sigma=sigma, patch_weighting=weighting)
    theirs = restoration.denoise_nl_means(noisy, h=h, sigma=sigma, fast_mode=weighting != "gaussian")
    p_noisy, p_ours, p_theirs = psnr(clean, noisy), psnr(clean, ours), psnr(clean, theirs)
    assert p_ours > p_noisy + 5.0
    assert p_ours > p_theirs - 0.5, (p_ours, p_theirs)
    if two_sided:
        assert p_ours < p_theirs + 0.5, (p_ours, p_theirs)


@pytest.mark.parametrize("name, crop", [("camera", (slice(160, 288), slice(160, 288))),
                                        ("astronaut", (slice(40, 136), slice(180, 276)))])
def test_bilateral_reproduces_skimage_with_its_spatial_table(name, crop):
    """skimage's bilateral = ours with skimage's effective spatial table, its colour distance divided by the number
    of channels (σ_r · C here) and zero padding: equal outputs up to its colour lookup-table quantisation."""
    clean, noisy = _noisy(getattr(skimage_data, name)()[crop])
    channels = 1 if noisy.ndim == 2 else noisy.shape[2]
    for sigma_color, sigma_spatial in ((0.1, 1.0), (0.3, 2.0)):
        win = max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
        theirs = restoration.denoise_bilateral(noisy, sigma_color=sigma_color, sigma_spatial=sigma_spatial,
                                               channel_axis=None if channels == 1 else -1)
        ours = bilateral(noisy, sigma_color=sigma_color * channels, mode="constant",
                         spatial_kernel=skimage_spatial_kernel(win, sigma_spatial))
        assert np.abs(ours - theirs).max() < 1e-3
        assert abs(psnr(clean, ours) - psnr(clean, theirs)) < 0.02
        textbook = bilateral(noisy, sigma_color=sigma_color * channels, sigma_spatial=sigma_spatial, mode="constant")
        assert np.abs(textbook - theirs).max() > 0.02  # skimage's table is not the Gaussian: this test can fail


@pytest.mark.slow
def test_full_size_camera_psnr_against_skimage():
    """Full 512 × 512 noisy camera (σ = 0.1, seed 0). Prints the figures reported in the docs."""
    clean, noisy = _noisy(skimage_data.camera())
    rows = []
    cases = [("uniform", 0.1, 0.0), ("skimage", 0.1, 0.0), ("gaussian", 0.1, 0.0), ("uniform", 0.08, 0.1),
             ("skimage", 0.08, 0.1), ("uniform", 0.06, 0.1), ("skimage", 0.06, 0.1), ("gaussian", 0.06, 0.1)]
    for weighting, h, sigma in cases:
        ours = psnr(clean, nl_means(noisy, h=h, sigma=sigma, patch_weighting=weighting))
        theirs = psnr(clean, restoration.denoise_nl_means(noisy, h=h, sigma=sigma, fast_mode=weighting != "gaussian"))
        rows.append((f"nlmeans {weighting} h={h} sigma={sigma}", ours, theirs))
        if (weighting, sigma) != ("gaussian", 0.1):  # measured exception: ours 27.94 dB, skimage 28.87 dB (its slow
            assert abs(ours - theirs) < 0.5  # mode clamps every pair and also zeroes pairs whose centres differ)
        if sigma > 0:  # the self-pair clamp's effect: sigma = 0 is the same softmax without it
            rows.append(("  same without the self-pair clamp", psnr(clean, nl_means(noisy, h=h,
                         patch_weighting=weighting)), theirs))
    for sigma_color, sigma_spatial in ((0.1, 1.0), (0.2, 2.0)):
        win = max(5, 2 * math.ceil(3 * sigma_spatial) + 1)
        theirs = psnr(clean, restoration.denoise_bilateral(noisy, sigma_color=sigma_color, sigma_spatial=sigma_spatial))
        compat = psnr(clean, bilateral(noisy, sigma_color=sigma_color, mode="constant",
                                       spatial_kernel=skimage_spatial_kernel(win, sigma_spatial)))
        textbook = psnr(clean, bilateral(noisy, sigma_color=sigma_color, sigma_spatial=sigma_spatial))
        rows.append((f"bilateral sc={sigma_color} ss={sigma_spatial} skimage-table", compat, theirs))
        rows.append((f"bilateral sc={sigma_color} ss={sigma_spatial} gaussian (textbook)", textbook, theirs))
        assert abs(compat - theirs) < 0.05
    for row in rows:
        print(f"{row[0]:55s} ours {row[1]:.2f} dB  skimage {row[2]:.2f} dB")


# ------------------------------------------------------------------------------------------------- (3) errors
@pytest.mark.parametrize(
    "image, error, match",
    [
        ([[0.1, 0.2]], TypeError, "image must be a numpy array"),
        (np.zeros((4, 4), dtype=np.int32), TypeError, "float, uint8 or uint16, got dtype int32"),
        (np.zeros((4, 4), dtype=bool), TypeError, "got dtype bool"),
        (np.zeros((2, 4, 4, 3)), ValueError, r"got shape \(2, 4, 4, 3\)"),
        (np.zeros((4, 4, 5)), ValueError, "1-4 channels, got shape"),
        (np.zeros((0, 4)), ValueError, "at least one pixel"),
        (np.array([[0.1, np.nan]]), ValueError, "1 NaN/inf"),
    ],
)
def test_bad_images(image, error, match):
    for run in (nl_means, bilateral):
        with pytest.raises(error, match=match):
            run(image)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(patch_size=4), ValueError, "patch_size must be an odd int ≥ 1.*got 4"),
        (dict(patch_size=3.0), TypeError, "patch_size must be an int"),
        (dict(patch_distance=-1), ValueError, "patch_distance must be an int ≥ 0.*got -1"),
        (dict(h=0.0), ValueError, "h must be a finite number > 0, got 0.0"),
        (dict(h="0.1"), TypeError, "h must be a number"),
        (dict(sigma=-0.1), ValueError, "sigma must be a finite number ≥ 0"),
        (dict(patch_weighting="box"), ValueError, "patch_weighting must be one of"),
        (dict(mode="nearest"), ValueError, "mode must be one of .*'nearest'"),
        (dict(mode="constant", cval=float("nan")), ValueError, "cval must be a finite number"),
    ],
)
def test_bad_nl_means_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        nl_means(np.zeros((4, 4), dtype=np.float32), **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(win_size=4), ValueError, "win_size must be an odd int ≥ 1.*got 4"),
        (dict(sigma_spatial=0), ValueError, "sigma_spatial must be a finite number > 0"),
        (dict(sigma_color=-1.0), ValueError, "sigma_color must be a finite number > 0"),
        (dict(sigma_color=float("inf")), ValueError, "sigma_color must be a finite number"),
        (dict(mode="clip"), ValueError, "mode must be one of"),
        (dict(spatial_kernel=np.ones((4, 4))), ValueError, r"odd win, got shape \(4, 4\)"),
        (dict(spatial_kernel=np.zeros((3, 3))), ValueError, "weights > 0"),
    ],
)
def test_bad_bilateral_parameters(kwargs, error, match):
    img = _image((5, 6), seed=0)
    with pytest.raises(error, match=match):
        bilateral(img, **kwargs)
