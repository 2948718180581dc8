"""Every backbone runs at any input size its strides allow (``model.input_multiple``), not only the size it was
built for: parametrized over every registered tiny preset, at non-square sizes below and above the built one
(odd sides where the family allows them). Swin pads to window multiples: it equals timm's ``set_input_size`` at
sizes the windows divide, runs where they do not, and a Swin built at 224 runs at 192, 256 and 320×480."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer

from visionattn.models import create_model, get_preset, list_models
from visionattn.models.families.swin import Swin, SwinSpec, fit_window
from visionattn.ops import Window

TINY = [n for n in list_models("*_test") if getattr(get_preset(n).builder, "input_kind", "image") == "image"]
# (video presets: the same checks on clips in tests/test_video_models.py)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _build(name: str, **kw):
    fields = {f.name for f in dataclasses.fields(get_preset(name).spec)}
    overrides = {k: 0.0 for k in ("drop_path", "drop_rate") if k in fields}
    torch.manual_seed(0)
    return create_model(name, num_classes=5, **overrides, **kw).eval()


def _round_up(n: float, q: int) -> int:
    return max(q, -(-int(n) // q) * q)


def _sizes(name: str, q: int) -> list[tuple[int, int]]:
    """Non-square sizes below and above the built one, multiples of ``q``; odd sides where ``q`` is 1."""
    s = get_preset(name).img_size
    small, large = _round_up(s * 0.5, q), _round_up(s * 1.5, q)
    sizes = [(small, large), (large + q, small)]
    if q == 1:
        sizes.append((s + 3, s - 5))
    return sizes


def test_every_family_is_covered():
    families = {type(create_model(n)).__name__ for n in TINY}
    assert {"VisionTransformer", "Swin", "CoAtNet", "ResNet", "HybridViT", "AttnResNet"} <= families


@pytest.mark.parametrize("name", TINY)
def test_runs_at_other_sizes(name):
    model = _build(name)
    q = model.input_multiple
    for h, w in _sizes(name, q):
        x = _images(2, h, w)
        with torch.no_grad():
            out = model(x)
            maps = model.forward_intermediates(x)
        assert out.shape == (2, 5) and torch.isfinite(out).all(), f"{name} at {h}×{w}"
        for fmap, info in zip(maps, model.feature_info, strict=True):
            expected = (2, info.num_chs, -(-h // info.reduction), -(-w // info.reduction))
            assert tuple(fmap.shape) == expected, f"{name} at {h}×{w}: {info}"
            assert torch.isfinite(fmap).all()
    # the built size is not disturbed by having run at others (no state kept between calls)
    size = get_preset(name).img_size
    x = _images(2, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _build(name)(x), rtol=0, atol=0)


STRIDED = [n for n in TINY if create_model(n).input_multiple > 1]  # the others run at any size


def test_strided_families():
    assert {type(create_model(n)).__name__ for n in STRIDED} == {"VisionTransformer", "Swin", "CoAtNet"}


@pytest.mark.parametrize("name", STRIDED)
def test_sizes_the_strides_refuse_say_so(name):
    model = _build(name)
    q = model.input_multiple
    size = get_preset(name).img_size
    with pytest.raises(ValueError, match=rf"{size + 2}.*multiple of {q}|multiple of the patch size {q}"):
        model(_images(1, size + 2, size))


# -- Swin: detection-style padding ---------------------------------------------------------------------------
def test_fit_window_follows_timm_rule():
    assert fit_window(7, False, (56, 56)) == Window(7)
    assert fit_window(7, True, (56, 56)) == Window(7, 3)
    assert fit_window(7, True, (6, 6)) == Window(6)  # grid smaller than the window: the whole grid, no shift
    assert fit_window(7, True, (10, 7)) == Window(7, (3, 0))  # an axis that is one whole window: no shift
    assert fit_window(7, True, (80, 5)) == Window((7, 5), (3, 0))


def _timm_pair(img_size: int):
    kwargs = dict(embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=4)
    timm_model = SwinTransformer(img_size=img_size, patch_size=4, num_classes=10, **kwargs)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for pname, p in timm_model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (1.0 if "relative_position_bias_table" in pname else 0.15))
    spec = SwinSpec(embed_dim=24, depths=(2, 2), heads=(2, 4), window=4, drop_path=0.0)
    ours = Swin(spec, num_classes=10, img_size=img_size).eval()
    ours.load_state_dict(ours.convert_state_dict(timm_model.state_dict()), strict=True)
    return timm_model.eval(), ours


@pytest.mark.parametrize("size", [(32, 32), (128, 96), (32, 64)])
def test_swin_at_other_sizes_equals_timm_set_input_size(size):
    """Built at 64 (grids 16, 8): at sizes whose stage grids the window 4 divides, or where a grid is one window,
    our per-call windows and shifts are timm's after ``set_input_size(img_size, window_size=4)``."""
    timm_model, ours = _timm_pair(64)
    timm_model.set_input_size(img_size=size, window_size=4)
    x = _images(2, *size)
    with torch.no_grad():
        ref, got = timm_model(x), ours(x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("shifted", [False, True])
def test_swin_non_dividing_grid_is_padding_to_window_multiples_masked(shifted):
    """A block on a 9×13 grid with window 4 equals the detection recipe done by hand: pad to 12×16 (here with
    NaN), pass the padding as key_padding_mask, crop back. (timm attends to zero padding instead.)"""
    _, ours = _timm_pair(64)
    block = ours.stages[0].blocks[int(shifted)]
    pattern = fit_window(4, shifted, (9, 13))
    x = torch.randn(2, 9, 13, 24, generator=torch.Generator().manual_seed(3))  # (B, H, W, C)
    padded = torch.full((2, 12, 16, 24), float("nan"))
    padded[:, :9, :13] = x
    mask = torch.ones(2, 12, 16, dtype=torch.bool)
    mask[:, :9, :13] = False
    with torch.no_grad():
        got = block(x, pattern=pattern)  # the operator pads to whole windows itself
        ref = block(padded, key_padding_mask=mask, pattern=fit_window(4, shifted, (12, 16)))[:, :9, :13]
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_swin_runs_where_windows_do_not_divide():
    _, ours = _timm_pair(64)
    x = _images(1, 36, 52)  # grids 9×13 and 5×7
    with torch.no_grad():
        out = ours(x)
        maps = ours.forward_intermediates(x)
    assert torch.isfinite(out).all()
    assert [tuple(m.shape[-2:]) for m in maps] == [(9, 13), (5, 7)]


@pytest.mark.parametrize("size", [(192, 192), (256, 256), (320, 480)])
def test_swin_built_at_224_runs_at_detection_sizes(size):
    """Swin-T's windows (7) and layout at small width: 192 gives a last-stage grid 6 < 7 (whole grid as window),
    256 gives 8 (padded to 14 and masked), 320×480 gives 80×120 .. 10×15 (padded in every stage)."""
    torch.manual_seed(0)
    model = create_model("swin_nano_patch4_window7_224", num_classes=3, embed_dim=24, drop_path=0.0).eval()
    x = _images(1, *size)
    with torch.no_grad():
        out = model(x)
        maps = model.forward_intermediates(x)
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    assert [tuple(m.shape[-2:]) for m in maps] == [(-(-size[0] // r), -(-size[1] // r)) for r in (4, 8, 16, 32)]
