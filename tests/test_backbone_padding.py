"""Padding masks reach the operator: ``forward_features(x, padding_mask)`` / ``forward_intermediates(x,
padding_mask=)`` take a bool ``(B, H, W)`` pixel mask (True = padding, from batching images of different sizes).

* ViT (global attention over patches): an image padded on the right/bottom with random junk (or NaN) gives, at
  its content tokens, the features it gives alone — the padded patches are never attended and the position
  embedding is fitted to the content.
* Every attention family passes the mask, downsampled to each attention call's key grid (a token is padding when
  its whole patch is), as ``key_padding_mask`` to *every* operator call; convolutional families ignore it.
* Where exactness cannot hold: convolutions that overlap the border (ResNet/CoAtNet/hybrid stems, MBConv, 3×3
  mixers) and Swin's windows (a window of the padded image is not a window of the image alone; shifted windows
  move with the padded grid) see the padding, so their content features differ from the image alone's; only the
  keys are masked there.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from visionattn.layers.padding import downsample_mask
from visionattn.models import create_model, get_preset, list_models
from visionattn.ops import BACKENDS, intercept_attention

TINY = [n for n in list_models("*_test") if getattr(get_preset(n).builder, "input_kind", "image") == "image"]
# (video presets: the same checks on clips in tests/test_video_models.py)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, **kw):
    fields = {f.name for f in dataclasses.fields(get_preset(name).spec)}
    overrides = {k: 0.0 for k in ("drop_path", "drop_rate") if k in fields}
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **overrides, **kw).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # non-trivial weights everywhere (no zero biases, no identity norms)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randn(3, h, w, generator=torch.Generator().manual_seed(seed))


def _batch(images: list[torch.Tensor], h: int, w: int, fill: str = "junk") -> tuple[torch.Tensor, torch.Tensor]:
    """Images padded at the right/bottom to ``h × w`` with random junk (or NaN), and the pixel mask."""
    g = torch.Generator().manual_seed(99)
    x = torch.randn(len(images), 3, h, w, generator=g) * 3 + 5  # junk, clearly unlike the content
    if fill == "nan":
        x.fill_(float("nan"))
    mask = torch.ones(len(images), h, w, dtype=torch.bool)
    for i, img in enumerate(images):
        x[i, :, : img.shape[1], : img.shape[2]] = img
        mask[i, : img.shape[1], : img.shape[2]] = False
    return x, mask


# -- ViT: exact at the content -----------------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["junk", "nan"])
@pytest.mark.parametrize("overrides", [{}, {"pos_embed": "sincos"}, {"global_pool": "avg", "class_token": False}],
                         ids=["learned", "sincos", "avg-no-cls"])
def test_vit_padded_batch_equals_each_image_alone(fill, overrides):
    model = _build("vit_tiny_test", **overrides)  # patch 8, built at 32 (4×4 patches)
    prefix = model.num_prefix_tokens
    images = [_image(24, 40, 1), _image(40, 16, 2), _image(48, 56, 3)]  # 3×5, 5×2 and 6×7 patches
    x, mask = _batch(images, 48, 56, fill)
    with torch.no_grad():
        feats = model.forward_features(x, padding_mask=mask)  # (3, prefix + 6·7, C)
        maps = model.forward_intermediates(x, padding_mask=mask)[-1]  # (3, C, 6, 7)
        for i, img in enumerate(images):
            alone = model.forward_features(img[None])  # (1, prefix + h·w, C)
            h, w = img.shape[1] // 8, img.shape[2] // 8
            grid = feats[i, prefix:].reshape(6, 7, -1)[:h, :w].reshape(h * w, -1)  # content tokens, raster order
            got = torch.cat([feats[i, :prefix], grid])
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, alone[0], rtol=1e-5, atol=1e-5, msg=f"image {i} ({fill})")
            alone_map = model.forward_intermediates(img[None])[-1]
            torch.testing.assert_close(maps[i, :, :h, :w], alone_map[0], rtol=1e-5, atol=1e-5)
            logits = model.forward_head(alone)
            assert logits.abs().max() > 0.1
    if fill == "junk":  # the guard: without the mask the junk changes the content features
        with torch.no_grad():
            unmasked = model.forward_features(x)
        assert not torch.allclose(unmasked[0, : prefix + 1], feats[0, : prefix + 1], atol=1e-3)


def test_vit_mask_with_grad_checkpointing_and_distillation():
    model = _build("deit_tiny_distilled_test").train()
    x, mask = _batch([_image(16, 24, 1), _image(32, 32, 2)], 32, 32)
    plain = model.forward_features(x, padding_mask=mask)
    model.set_grad_checkpointing(True)
    checkpointed = model.forward_features(x, padding_mask=mask)
    torch.testing.assert_close(checkpointed, plain, rtol=0, atol=0)
    checkpointed.square().sum().backward()
    assert model.cls_token.grad is not None and torch.isfinite(model.cls_token.grad).all()


# -- every family: the mask reaches every operator call ------------------------------------------------------
def _calls(model, x, mask):
    calls = []

    def handler(call):
        calls.append(call)
        return BACKENDS["reference"].run(call)

    with torch.no_grad(), intercept_attention(handler):
        out = model.forward_features(x, padding_mask=mask)
    return calls, out


def _expected_key_mask(model, mask: torch.Tensor, kv_grid: tuple[int, ...]) -> torch.Tensor:
    H, W = mask.shape[1:]
    if len(kv_grid) == 1:  # a sequence: prefix tokens, then the patch grid of the last feature map
        patches = downsample_mask(mask, model.feature_info[-1].reduction).flatten(1)  # (B, N)
        prefix = kv_grid[0] - patches.shape[1]
        return torch.cat([torch.zeros(mask.shape[0], prefix, dtype=torch.bool), patches], dim=1)
    h, w = kv_grid
    assert H % h == 0 and W % w == 0 and H // h == W // w, (mask.shape, kv_grid)
    return downsample_mask(mask, H // h)


@pytest.mark.parametrize("name", TINY)
def test_mask_reaches_every_attention_call(name):
    model = _build(name)
    size = get_preset(name).img_size
    H, W = 2 * size, 2 * size
    x, mask = _batch([_image(size, size + size // 2, 1), _image(H, W, 2)], H, W)
    calls, out = _calls(model, x, mask)
    plain_calls, plain = _calls(model, x, None)
    assert len(calls) == len(plain_calls)
    if not calls:  # a convolutional family: the mask is ignored
        torch.testing.assert_close(out, plain, rtol=0, atol=0)
        return
    for i, call in enumerate(calls):
        assert call.key_padding_mask is not None, f"{name}: operator call {i} ({call.pattern}) got no mask"
        expected = _expected_key_mask(model, mask, call.kv_grid)
        assert torch.equal(call.key_padding_mask, expected), f"{name}: call {i} on {call.kv_grid}"
        assert expected[0].any() and not expected[1].any()  # image 0 is padded, image 1 fills the canvas
    assert not torch.allclose(out[0], plain[0], atol=1e-4)  # the padded image changed: keys were masked
    torch.testing.assert_close(out[1], plain[1], rtol=1e-5, atol=1e-5)  # the full image did not


def test_downsample_mask_rule():
    mask = torch.zeros(1, 5, 7, dtype=torch.bool)
    mask[0, :, 4:] = True  # columns 4.. padding
    mask[0, 3:] = True  # rows 3.. padding
    got = downsample_mask(mask, 2)  # (1, 3, 4): ceil, out-of-grid positions count as padding
    expected = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]], dtype=torch.bool)
    assert torch.equal(got, expected)
    assert downsample_mask(mask, (1, 7)).shape == (1, 5, 1)
    with pytest.raises(ValueError, match="bool mask"):
        downsample_mask(mask.float(), 2)


@pytest.mark.parametrize(
    "mask, error, match",
    [
        (torch.zeros(2, 32, 31, dtype=torch.bool), ValueError,
         r"padding_mask must be bool \(B, H, W\) = \(2, 32, 32\)"),
        (torch.zeros(2, 32, 32), ValueError, r"got torch.float32 \(2, 32, 32\)"),
        (torch.zeros(1, 32, 32, dtype=torch.bool), ValueError, r"= \(2, 32, 32\)"),
        ([[False]], TypeError, "padding_mask must be a bool tensor"),
    ],
)
def test_bad_masks_say_expected_and_got(mask, error, match):
    model = create_model("vit_tiny_test")
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(error, match=match):
        model.forward_features(x, padding_mask=mask)
    with pytest.raises(error, match=match):
        model.forward_intermediates(x, padding_mask=mask)
