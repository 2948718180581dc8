"""Swin: equivalence with timm's SwinTransformer (shifted-window masking, relative bias orientation, patch merging
order, checkpoint conversion), the Backbone contract on ``swin_test``, variable resolution and size errors."""

from __future__ import annotations

import re
import time

import pytest
import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import PatchMerging as TimmPatchMerging
from timm.models.swin_transformer import SwinTransformer

from visionattn.layers.merging import PatchMerging
from visionattn.models import create_model, get_preset
from visionattn.models.swin import Swin, SwinSpec, stage_window


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(b: int, h: int, w: int | None = None) -> torch.Tensor:
    return torch.randn(b, 3, h, w or h, generator=torch.Generator().manual_seed(1))


def _randomise_timm(model: torch.nn.Module, std: float = 0.15) -> torch.nn.Module:
    """Seeded, clearly non-trivial weights: noise of ``std`` on every parameter, and std 1 on the bias tables so
    a flipped or transposed table cannot pass."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if "relative_position_bias_table" in name else std
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


# Small timm configs (timm keyword args) covering: shifted windows, a stage whose grid equals the window (shift 0),
# a grid smaller than the window (window clipped to the grid, 3×3 table), and a non-square image (per-axis shift).
SMALL = [
    dict(img_size=64, embed_dim=24, depths=(2, 2), num_heads=(2, 4), window_size=4),
    dict(img_size=32, embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=4),
    dict(img_size=(64, 32), embed_dim=16, depths=(2, 2), num_heads=(2, 2), window_size=4),
]


def _pair(kwargs) -> tuple[SwinTransformer, Swin]:
    timm_model = _randomise_timm(SwinTransformer(patch_size=4, num_classes=10, **kwargs))
    spec = SwinSpec(embed_dim=kwargs["embed_dim"], depths=kwargs["depths"], heads=kwargs["num_heads"],
                    window=kwargs["window_size"], drop_path=0.0)
    ours = Swin(spec, num_classes=10, img_size=kwargs["img_size"]).eval()
    ours.load_state_dict(ours.convert_state_dict(timm_model.state_dict()), strict=True)
    return timm_model, ours


@pytest.mark.parametrize("kwargs", SMALL, ids=["64-w4", "32-clipped", "64x32"])
def test_small_swin_matches_timm(kwargs):
    timm_model, ours = _pair(kwargs)
    size = kwargs["img_size"] if isinstance(kwargs["img_size"], tuple) else (kwargs["img_size"],) * 2
    x = _images(3, *size)
    with torch.no_grad():
        ref, got = timm_model(x), ours(x)
        # every stage, not just the logits: timm's NHWC stage outputs vs our (B, C, H, W) maps
        state = timm_model.patch_embed(x)
        maps = ours.forward_intermediates(x)
        for i, layer in enumerate(timm_model.layers):
            state = layer(state)
            assert _rel_err(maps[i], state.permute(0, 3, 1, 2)) < 1e-5, f"stage {i}"
    assert ref.abs().max() > 0.1  # the comparison is not between near-zero logits
    assert _rel_err(got, ref) < 1e-5


def test_flipped_table_is_caught():
    """Guard for the test above: without the (query − key) → (key − query) flip the logits differ."""
    timm_model, ours = _pair(SMALL[0])
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("position.table"):
                p.copy_(p.flip(1, 2))
        x = _images(2, 64)
        assert _rel_err(ours(x), timm_model(x)) > 1e-2


def test_patch_merging_matches_timm():
    theirs = TimmPatchMerging(dim=6, out_dim=10)
    ours = PatchMerging(6, 10)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert ours(x).shape == (2, 2, 3, 10)
    odd = torch.randn(2, 5, 7, 6)  # zero-padded at the end to 6×8 first, as timm
    torch.testing.assert_close(ours(odd), theirs(odd), rtol=1e-6, atol=1e-6)
    assert ours(odd).shape == (2, 3, 4, 10)
    with pytest.raises(ValueError, match=r"channels-last \(B, H, W, 6\)"):
        ours(torch.randn(2, 6, 5, 5))


def test_original_microsoft_layout_converts():
    """Original checkpoints downsample at the end of stage i and name the classifier ``head``."""
    timm_model, ours = _pair(SMALL[0])
    original = {}
    for key, value in timm_model.state_dict().items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        original[key.replace("head.fc.", "head.")] = value
    converted = ours.convert_state_dict({"model": original})
    assert set(converted) == set(ours.state_dict())
    for key, value in ours.state_dict().items():
        assert torch.equal(converted[key], value), key


def test_convert_passes_our_keys_through():
    model = create_model("swin_test", num_classes=10)
    sd = model.state_dict()
    converted = model.convert_state_dict(sd)
    assert set(converted) == set(sd) and all(torch.equal(converted[k], sd[k]) for k in sd)


def _timm_swin_test() -> SwinTransformer:
    spec = get_preset("swin_test").spec
    return _randomise_timm(SwinTransformer(img_size=64, patch_size=spec.patch, embed_dim=spec.embed_dim,
                                           depths=spec.depths, num_heads=spec.heads, window_size=spec.window,
                                           num_classes=10))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_create_model_loads_timm_checkpoint(tmp_path, suffix):
    timm_model = _timm_swin_test()
    path = tmp_path / f"swin{suffix}"
    sd = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    ours = create_model("swin_test", num_classes=10, pretrained_path=str(path)).eval()
    x = _images(2, 64)
    with torch.no_grad():
        assert _rel_err(ours(x), timm_model(x)) < 1e-5


def test_wrong_architecture_checkpoint_fails(tmp_path):
    path = tmp_path / "swin.pth"
    torch.save(_timm_swin_test().state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatch|missing|unexpected"):
        create_model("swin_test", num_classes=10, embed_dim=32, pretrained_path=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_swin_tiny_checkpoint_matches_timm(tmp_path, suffix):
    import timm

    start = time.perf_counter()
    # 12 blocks of std-0.15 noise give logits ~15 whose fp32 rounding (timm vs float64: 4e-6) nears the bound;
    # std 0.05 keeps every weight non-trivial with a safe margin
    timm_model = _randomise_timm(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False), std=0.05)
    path = tmp_path / f"swin_t{suffix}"
    sd = {k: v.contiguous() for k, v in timm_model.state_dict().items()}
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
    ours = create_model("swin_tiny_patch4_window7_224", pretrained_path=str(path)).eval()
    x = _images(2, 224)
    with torch.no_grad():
        err = _rel_err(ours(x), timm_model(x))
    print(f"swin_tiny {suffix}: max relative logit difference {err:.2e} ({time.perf_counter() - start:.1f} s)")
    assert err < 1e-5


# -- the Backbone contract on swin_test --------------------------------------------------------------------
def test_forward_intermediates_and_feature_info():
    model = create_model("swin_test", num_classes=7).eval()
    x = _images(2, 64)
    assert model(x).shape == (2, 7)
    maps = model.forward_intermediates(x)
    assert [(m.shape[1], 64 // m.shape[2], 64 // m.shape[3]) for m in maps] == [
        (info.num_chs, info.reduction, info.reduction) for info in model.feature_info
    ]
    assert [info.reduction for info in model.feature_info] == [4, 8, 16, 32]
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)


def test_backward_reaches_every_parameter_and_checkpointing_matches():
    model = create_model("swin_test", num_classes=5).train()
    x = _images(2, 64)
    out = model(x)
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x)
    out2.square().sum().backward()
    torch.testing.assert_close(out2, out)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_stage_windows_follow_swin():
    assert stage_window(7, (56, 56)) == ((7, 7), (3, 3))
    assert stage_window(7, (7, 7)) == ((7, 7), (0, 0))
    assert stage_window(7, (8, 4)) == ((7, 4), (3, 0))
    model = create_model("swin_nano_patch4_window7_224", depths=(2, 2, 6, 2))  # Swin-T's windows, half width
    patterns = [[block.attn.pattern for block in stage.blocks] for stage in model.stages]
    assert [p.shift for p in patterns[0]] == [0, 3] and [p.shift for p in patterns[2]] == [0, 3, 0, 3, 0, 3]
    assert [p.shift for p in patterns[3]] == [0, 0] and patterns[3][0].size == 7  # grid 7 = window: no shift
    assert tuple(model.stages[0].blocks[0].attn.position.table.shape) == (3, 13, 13)


def test_variable_resolution():
    model = create_model("swin_test", num_classes=3).eval()
    with torch.no_grad():
        assert model(_images(1, 96, 128)).shape == (1, 3)  # grids 24×32 .. 3×4: windows padded and masked
    maps = model.forward_intermediates(_images(1, 96, 128))
    assert [tuple(m.shape[-2:]) for m in maps] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    ape = create_model("swin_test", num_classes=3, ape=True).eval()  # learned absolute embedding, interpolated
    with torch.no_grad():
        assert ape(_images(1, 96)).shape == (1, 3)
    # Swin-T's layout at 256: the last stage grid 8 exceeds window 7, so it is padded to 14 and masked
    nano = create_model("swin_nano_patch4_window7_224", num_classes=3, depths=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        assert nano(_images(1, 256)).shape == (1, 3)


def test_bad_sizes_raise_with_values():
    model = create_model("swin_test")
    with pytest.raises(ValueError, match=r"input 102×64 must be a multiple of 4 \(patch 4\).*102 % 4 = 2"):
        model(_images(1, 102, 64))
    with pytest.raises(ValueError, match=r"img_size 202×202 must be a multiple of 4.*202 % 4 = 2"):
        create_model("swin_test", img_size=202)
    with pytest.raises(ValueError, match="heads"):
        SwinSpec(embed_dim=10, heads=(3, 6, 12, 24))


@pytest.mark.slow
def test_full_size_presets_build():
    for name, params in (("swin_tiny_patch4_window7_224", 28.29e6), ("swin_nano_patch4_window7_224", 5.51e6)):
        model = create_model(name)
        assert abs(sum(p.numel() for p in model.parameters()) - params) / params < 0.01, name
        with torch.no_grad():
            assert model.eval()(_images(1, 224)).shape == (1, 1000)
