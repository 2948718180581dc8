"""ResNet family: plain ResNet, SASA, HaloNet, BoTNet, Axial-ResNet, Non-local ResNet, R26+ViT.

Tiny presets run in the default suite; full-size presets are marked slow. The one-operator claim is checked by
intercepting :func:`visionattn.ops.attention`: every attention mixer must go through it with the pattern its
spec names.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionattn.layers.attention import Attention
from visionattn.layers.bottleneck import BottleneckBlock, MixerSpec
from visionattn.layers.nonlocal_block import NonLocalBlock
from visionattn.layers.resize import resize_relative
from visionattn.layers.stems import make_stem
from visionattn.models import create_model, get_preset, list_models
from visionattn.models.resnet import ResNetSpec
from visionattn.ops import BACKENDS, Axial, Global, Halo, Neighborhood, intercept_attention

TINY = ["resnet_test", "sasa_resnet_test", "halonet_test", "botnet_test", "axial_resnet_test",
        "nonlocal_resnet_test", "r26_vit_test"]
FULL = ["resnet26", "resnet50", "sasa_resnet26", "sasa_resnet50", "halonet_h0", "halonet26t", "botnet26",
        "botnet50", "axial_resnet26", "nonlocal_resnet50", "r26_vit"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, **kw):
    torch.manual_seed(0)
    return create_model(name, num_classes=10, **kw), get_preset(name).img_size


def _images(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_presets_registered():
    names = set(list_models())
    assert set(TINY) | set(FULL) <= names
    assert all(get_preset(n).tiny for n in TINY) and not any(get_preset(n).tiny for n in FULL)
    assert all(get_preset(n).paper for n in TINY + FULL)


@pytest.mark.parametrize("name", TINY)
def test_forward_backward_every_parameter(name):
    model, size = _build(name)
    for m in model.modules():  # undo zero-init of residual BNs so gradients reach every branch
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    model.train()
    out = model(_images(size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reached {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        # relative tables may hold offsets the small grids never use; everything else must learn
        if ".position." not in pname:
            assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", TINY)
def test_intermediates_match_feature_info(name):
    model, size = _build(name)
    model.eval()
    x = _images(size)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
        assert len(maps) == len(model.feature_info) == len(model.stages)
        for fmap, info in zip(maps, model.feature_info, strict=True):
            assert fmap.shape == (2, info.num_chs, size // info.reduction, size // info.reduction)
        expected = [4, 8, 16, 16] if name == "r26_vit_test" else [4, 8, 16, 32]
        assert [i.reduction for i in model.feature_info] == expected
        last = model.forward_intermediates(x, indices=1)
        assert len(last) == 1 and torch.equal(last[0], maps[-1])
        assert torch.equal(model(x), model(x))  # eval determinism
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["sasa_resnet_test", "r26_vit_test", "halonet_test"])
def test_grad_checkpointing_identical(name):
    model, size = _build(name)
    model.train()
    x = _images(size)
    ref = model(x)
    model.set_grad_checkpointing(True)
    out = model(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    out.sum().backward()


EXPECTED_CALLS = {  # name -> (pattern type, number of operator calls per forward)
    "sasa_resnet_test": (Neighborhood, 5),
    "halonet_test": (Halo, 5),
    "botnet_test": (Global, 2),
    "axial_resnet_test": (Axial, 10),
    "nonlocal_resnet_test": (Global, 2),
    "r26_vit_test": (Global, 2),
    "resnet_test": (None, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CALLS))
def test_attention_mixers_use_the_operator(name):
    model, size = _build(name)
    model.eval()
    calls = []

    def handler(call):
        calls.append(call)
        return BACKENDS["reference"].run(call)

    x = _images(size)
    with torch.no_grad():
        plain = model(x)
        with intercept_attention(handler):
            routed = model(x)
    kind, count = EXPECTED_CALLS[name]
    assert len(calls) == count
    assert all(isinstance(c.pattern, kind) for c in calls)
    torch.testing.assert_close(routed, plain, rtol=1e-4, atol=1e-5)
    if name == "sasa_resnet_test":
        assert all(c.pattern.border == "pad" for c in calls)
    if name == "halonet_test":  # stride-2 blocks subsample queries inside the operator
        strided = [c for c in calls if c.pattern.stride == 2]
        assert len(strided) == 3 and all(c.q_grid == tuple(n // 2 for n in c.kv_grid) for c in strided)
    if name in ("sasa_resnet_test", "halonet_test", "botnet_test", "axial_resnet_test"):
        assert all(c.position is not None for c in calls)  # relative logits


def test_resnet50_matches_timm_params_and_logits(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("resnet50", num_classes=1000).eval()
    ours = create_model("resnet50").eval()
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in ref.parameters()) == 25_557_032
    state = ref.state_dict()
    for k, v in state.items():  # non-trivial BN statistics and gammas
        if k.endswith(("running_mean", "bn3.weight")):
            v.uniform_(-0.5, 0.5)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
    ref.load_state_dict(state)
    ours.load_state_dict(ours.convert_state_dict(state), strict=True)
    x = _images(64)
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
        # the same through checkpoint import (a timm .pth on disk → convert_state_dict → strict load)
        torch.save(state, tmp_path / "timm_resnet50.pth")
        loaded = create_model("resnet50", pretrained_path=str(tmp_path / "timm_resnet50.pth")).eval()
        torch.testing.assert_close(loaded(x), expected, rtol=1e-5, atol=1e-5)
    assert ours.convert_state_dict({"fc.weight": 1}) == {"fc.weight": 1}  # ours: untouched


def test_resnet26_param_count_matches_timm():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("resnet26")
    assert sum(p.numel() for p in create_model("resnet26").parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("name,size", [("resnet_test", 64), ("sasa_resnet_test", 64), ("halonet_test", 32),
                                       ("axial_resnet_test", 32), ("r26_vit_test", 64), ("botnet_test", 32)])
def test_variable_resolution(name, size):
    model, _ = _build(name)
    model.eval()
    with torch.no_grad():
        out = model(_images(size, batch=1))
        maps = model.forward_intermediates(_images(size, batch=1))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert [m.shape[-1] for m in maps] == [size // i.reduction for i in model.feature_info]


@pytest.mark.parametrize("name", ["botnet_test", "axial_resnet_test"])
def test_global_relative_tables_interpolate_for_larger_grids(name):
    """Grid-wide relative tables are sized for img_size; a larger input runs with them interpolated, exactly as a
    model built for that size whose tables are the interpolated ones."""
    model, size = _build(name)
    model.eval()
    x = _images(2 * size, batch=1)
    with torch.no_grad():
        out = model(x)
    torch.manual_seed(0)
    bigger = create_model(name, num_classes=10, img_size=2 * size).eval()
    state = model.state_dict()
    resized = 0
    for mname, module in model.named_modules():
        if isinstance(module, Attention) and module.position is not None:
            radius = bigger.get_submodule(mname).position.radius
            if radius != module.position.radius:
                tables = resize_relative(module.position.descriptor(), radius).tables
                for i, table in enumerate(tables):
                    state[f"{mname}.position.tables.{i}"] = table.detach()
                resized += 1
    assert resized > 0
    bigger.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(bigger(x), out, rtol=1e-5, atol=1e-6)
    assert out.abs().max() > 1e-3


def test_halonet_tiny_is_a_deprecated_alias():
    assert "halonet_tiny" not in list_models()
    with pytest.warns(DeprecationWarning, match="'halonet_tiny' is deprecated; use 'halonet26t'"):
        preset = get_preset("halonet_tiny")
    assert preset is get_preset("halonet26t") and "12.5M" in preset.paper
    with pytest.warns(DeprecationWarning, match="halonet26t"):
        old = create_model("halonet_tiny", num_classes=3, depths=(1, 1, 1, 1))
    new = create_model("halonet26t", num_classes=3, depths=(1, 1, 1, 1))
    assert old.preset.name == "halonet26t" and old.spec == new.spec
    assert [k for k in old.state_dict()] == [k for k in new.state_dict()]


@pytest.mark.parametrize("mixer", [MixerSpec(), MixerSpec("attention", Neighborhood(7, border="pad"), "rel_logits", 2),
                                   MixerSpec("attention", Halo(4, 1), "rel_logits", 2, downsample="query"),
                                   MixerSpec("attention", Global(), "rel_logits", 2),
                                   MixerSpec("axial", None, "rel_logits", 2)])
@pytest.mark.parametrize("grid", [7, 8])
def test_bottleneck_stride2_shapes(mixer, grid):
    block = BottleneckBlock(16, 8, 32, stride=2, mixer=mixer, grid_size=(grid, grid))
    out = block(torch.randn(2, 16, grid, grid))
    assert out.shape == (2, 32, -(-grid // 2), -(-grid // 2))


def test_nonlocal_block_starts_as_identity():
    block = NonLocalBlock(16).eval()
    x = torch.randn(2, 16, 5, 6)
    torch.testing.assert_close(block(x), x)
    assert block.attn.head_dim == 8 and isinstance(block.attn.pattern, Global)


def test_stems_reduce_by_four():
    x = torch.randn(1, 3, 64, 64)
    for kind in ("resnet", "deep", "tiered"):
        assert make_stem(kind, 32)(x).shape == (1, 32, 16, 16)
    with pytest.raises(ValueError, match="stem must be one of"):
        make_stem("patchify")


def test_spec_errors_say_expected_and_got():
    with pytest.raises(ValueError, match="one depth, width and mixer per stage"):
        ResNetSpec(depths=(1, 1), widths=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="needs a Pattern"):
        MixerSpec("attention")
    with pytest.raises(ValueError, match="needs a Halo pattern"):
        MixerSpec("attention", Global(), downsample="query")
    with pytest.raises(ValueError, match="stage 1 has blocks 0..0"):
        ResNetSpec(depths=(1, 1, 1, 1), nonlocal_after=((), (3,)))
    with pytest.raises(ValueError, match="not divisible by heads"):
        BottleneckBlock(16, 6, 16, mixer=MixerSpec("attention", Global(), heads=4))


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_presets_forward(name):
    model = create_model(name).eval()
    size = get_preset(name).img_size
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
