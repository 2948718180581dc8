"""load_image on every edge-case kind: converted to 8-bit RGB with the right values, or rejected by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_files import (
    BAD,
    CONVERTED,
    S,
    _gray,
    _rgb,
    _save_rgb,
    _w_16bit,
    _w_cmyk,
    _w_float,
    _w_gray,
    _w_la,
    _w_palette,
    _w_palette_transparent,
    _w_rgba,
)
from PIL import Image

from visionattn.data import BadImage, DataConfig, build_transform, load_image


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_load_image_converts(tmp_path, kind):
    writer, size = CONVERTED[kind]
    img = load_image(writer(tmp_path))
    assert img.mode == "RGB" and img.size == size
    arr = np.asarray(img)
    assert arr.max() > 0
    x = build_transform(DataConfig(img_size=S), train=False)(img)
    assert x.shape == (3, S, S) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_load_image_conversion_values(tmp_path):
    gray = np.asarray(load_image(_w_gray(tmp_path)))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 0] == _gray(9, 11, 1)).all()
    rgba = np.asarray(load_image(_w_rgba(tmp_path)))
    assert (rgba[:, :4] == 255).all(), "transparent pixels composite on white"
    assert (rgba[:, 4:] == _rgb(8, 8, 2)[:, 4:]).all(), "opaque pixels keep their colour"
    assert tuple(np.asarray(load_image(_w_la(tmp_path)))[0, 0]) == (255, 255, 255)
    pal = np.asarray(load_image(_w_palette_transparent(tmp_path)))
    assert tuple(pal[0, 0]) == (255, 255, 255) and tuple(pal[0, 1]) == (0, 255, 0)
    assert tuple(np.asarray(load_image(_w_palette(tmp_path)))[0, 0]) == (255, 0, 0)
    s16 = np.asarray(load_image(_w_16bit(tmp_path)))
    assert tuple(s16[0, :3, 0]) == (255, 100, 0), "16-bit scaled by 1/257"
    cmyk = np.asarray(load_image(_w_cmyk(tmp_path)))
    assert tuple(cmyk[0, 0]) == (255, 255, 255) and tuple(cmyk[0, 1]) == (0, 255, 255)
    f = np.asarray(load_image(_w_float(tmp_path)))
    assert tuple(f[0, :2, 0]) == (128, 255)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_load_image_rejects(tmp_path, kind):
    writer, reason = BAD[kind]
    path = writer(tmp_path)
    with pytest.raises(BadImage, match=reason) as info:
        load_image(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_image_missing_and_bomb(tmp_path, monkeypatch):
    with pytest.raises(BadImage, match="file not found"):
        load_image(tmp_path / "nope.png")
    path = _save_rgb(tmp_path / "big.png", 18, 20, 20)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 400 px > 2 * 100: Pillow refuses to decode
    with pytest.raises(BadImage, match="too large"):
        load_image(path)
