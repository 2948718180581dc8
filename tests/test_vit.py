"""ViT / DeiT family: spec validation, the Backbone contract on the tiny presets, variable resolution,
distillation heads, and the full-size presets' hyperparameters (timm's). Checkpoint import vs timm is in
test_checkpoint.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from visionattn.models import create_model, get_preset, list_models
from visionattn.models.families.vit import VisionTransformer, VitSpec

TINY = ["vit_tiny_test", "deit_tiny_distilled_test"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(b: int, h: int, w: int | None = None) -> torch.Tensor:
    return torch.randn(b, 3, h, w or h, generator=torch.Generator().manual_seed(1))


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Seeded noise on every parameter (no zero biases, no identity norms, no tiny class token)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


# -- spec -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(global_pool="max"), "global_pool"),
        (dict(pos_embed="rope"), "pos_embed"),
        (dict(dim=30, heads=4), "divisible"),
        (dict(class_token=False), "class_token"),
        (dict(distilled=True, global_pool="avg"), "distilled"),
        (dict(depth=0), "depth=0"),
    ],
)
def test_spec_rejects_bad_fields(fields, match):
    with pytest.raises(ValueError, match=match):
        VitSpec(**fields)


@pytest.mark.parametrize(
    "name, dim, heads, patch, distilled",
    [
        ("vit_tiny_patch16_224", 192, 3, 16, False),
        ("vit_small_patch16_224", 384, 6, 16, False),
        ("vit_base_patch16_224", 768, 12, 16, False),
        ("vit_small_patch8_224", 384, 6, 8, False),
        ("vit_base_patch8_224", 768, 12, 8, False),
        ("deit_tiny_patch16_224", 192, 3, 16, False),
        ("deit_small_patch16_224", 384, 6, 16, False),
        ("deit_base_patch16_224", 768, 12, 16, False),
        ("deit_tiny_distilled_patch16_224", 192, 3, 16, True),
        ("deit_small_distilled_patch16_224", 384, 6, 16, True),
        ("deit_base_distilled_patch16_224", 768, 12, 16, True),
        ("dino_vit_small_patch16", 384, 6, 16, False),
        ("dino_vit_base_patch16", 768, 12, 16, False),
    ],
)
def test_full_size_presets_have_timm_hyperparameters(name, dim, heads, patch, distilled):
    preset = get_preset(name)
    spec = preset.spec
    assert (spec.dim, spec.heads, spec.patch, spec.distilled) == (dim, heads, patch, distilled)
    assert (spec.depth, spec.mlp_ratio, spec.qkv_bias, spec.norm_eps) == (12, 4.0, True, 1e-6)
    assert (spec.global_pool, spec.pos_embed, spec.class_token) == ("token", "learned", True)
    assert preset.img_size == 224 and not preset.tiny
    assert preset.taxonomy.as_dict() == dict(purity="attention", form="softmax", scales="single",
                                              geometry="sequence", block="transformer")


def test_tiny_presets_are_registered_as_tiny():
    assert set(TINY) <= set(list_models("*", include_tiny=True)) - set(list_models("*", include_tiny=False))


# -- contract on the tiny presets -------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_forward_shapes_and_intermediates(name):
    model = create_model(name, num_classes=7).eval()
    x = _images(2, 32, 48)  # non-square: 4 × 6 patches of 8
    assert model(x).shape == (2, 7)
    feats = model.forward_features(x)
    prefix = 2 if "distilled" in name else 1
    assert feats.shape == (2, prefix + 4 * 6, 32)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    maps = model.forward_intermediates(x)
    assert len(maps) == len(model.feature_info) == model.spec.depth
    for fmap, info in zip(maps, model.feature_info, strict=True):
        assert fmap.shape == (2, info.num_chs, 32 // info.reduction, 48 // info.reduction)
    assert len(model.forward_intermediates(x, indices=1)) == 1
    # the last map is the last block's patch tokens, reshaped in raster order
    with torch.no_grad():
        tokens = model.forward_stem(x)
        for block in model.stages:
            tokens = block(tokens)
    expected = tokens[:, prefix:].reshape(2, 4, 6, 32).permute(0, 3, 1, 2)
    torch.testing.assert_close(maps[-1], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", TINY)
def test_backward_reaches_every_parameter(name):
    model = _randomise(create_model(name, num_classes=5)).train()
    model(_images(2, 32)).square().sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_grad_checkpointing_and_determinism():
    model = _randomise(create_model("vit_tiny_test", num_classes=5, drop_path=0.0))
    x = _images(2, 32)
    with torch.no_grad():
        model.eval()
        first, second = model(x), model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.train()
    plain = model(x)
    model.set_grad_checkpointing(True)
    torch.testing.assert_close(model(x), plain, rtol=0, atol=0)


@pytest.mark.parametrize(
    "overrides", [dict(global_pool="avg"), dict(global_pool="avg", class_token=False), dict(pos_embed="sincos"),
                  dict(pos_embed="none"), dict(layer_scale=1e-5, drop_path=0.1)]
)
def test_variants(overrides):
    model = create_model("vit_tiny_test", num_classes=3, **overrides).eval()
    x = _images(2, 32, 40)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert [m.shape for m in model.forward_intermediates(x)] == [(2, 32, 4, 5)] * 2
    if overrides.get("global_pool") == "avg":
        assert isinstance(model.norm, torch.nn.Identity) and isinstance(model.fc_norm, torch.nn.LayerNorm)


def test_distilled_heads():
    model = _randomise(create_model("deit_tiny_distilled_test", num_classes=6)).eval()
    x = _images(3, 32)
    cls_logits, dist_logits = model.forward_distill(x)
    assert cls_logits.shape == dist_logits.shape == (3, 6)
    assert not torch.allclose(cls_logits, dist_logits)  # two different heads on two different tokens
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2, rtol=0, atol=0)
    model.train()  # same return type in training
    assert model(x).shape == (3, 6)
    with pytest.raises(ValueError, match="distilled"):
        create_model("vit_tiny_test").forward_distill(x)


@pytest.mark.parametrize("name", TINY)
def test_reset_classifier(name):
    model = create_model(name, num_classes=10)
    model.reset_classifier(0)
    assert model(_images(2, 32)).shape == (2, 32)
    model.reset_classifier(4)
    assert model(_images(2, 32)).shape == (2, 4) and model.num_classes == 4
    if model.spec.distilled:
        assert model.head_dist.out_features == 4


# -- variable resolution ----------------------------------------------------------------------------------
def test_variable_resolution_interpolates_position_embedding():
    model = _randomise(create_model("vit_tiny_test", img_size=224, num_classes=4)).eval()  # 28 × 28 grid
    x224 = _images(1, 224)
    with torch.no_grad():
        before = model(x224)
        for size in (160, 288):
            out = model(_images(1, size))
            assert out.shape == (1, 4) and torch.isfinite(out).all()
            assert [m.shape[-2:] for m in model.forward_intermediates(_images(1, size))] == [(size // 8,) * 2] * 2
        after = model(x224)
    torch.testing.assert_close(after, before, rtol=0, atol=0)

    # a 288 input equals a model built for 288 whose grid embedding is the interpolated one
    big = create_model("vit_tiny_test", img_size=288, num_classes=4).eval()
    state = model.state_dict()
    state["pos_embed.weight"] = model.pos_embed.embedding((36, 36)).detach()
    big.load_state_dict(state)
    x288 = _images(1, 288)
    with torch.no_grad():
        torch.testing.assert_close(model(x288), big(x288), rtol=0, atol=0)
    assert model.pos_embed.embedding((28, 28)) is model.pos_embed.weight


def test_not_divisible_by_patch_is_a_clear_error():
    model = create_model("vit_tiny_test")
    with pytest.raises(ValueError, match=r"36×32 is not a multiple of the patch size 8"):
        model(_images(1, 36, 32))
    with pytest.raises(ValueError, match=r"img_size \(30, 30\) is not a multiple of the patch size 8"):
        create_model("vit_tiny_test", img_size=30)
    with pytest.raises(ValueError, match=r"expects images \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))


def test_sincos_has_no_position_parameters():
    model = create_model("vit_tiny_test", pos_embed="sincos")
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith(("pos_embed", "prefix_pos")) for n in names)
    assert model.no_weight_decay() == {"cls_token"}


def test_spec_fields_are_overridable():
    model = create_model("vit_tiny_test", depth=3, backend="reference")
    assert isinstance(model, VisionTransformer) and len(model.stages) == 3
    assert all(block.attn.backend == "reference" for block in model.stages)
    assert dataclasses.replace(model.spec, depth=2, backend="auto") == get_preset("vit_tiny_test").spec


def test_reference_backend_matches_auto():
    model = _randomise(create_model("vit_tiny_test", num_classes=4)).eval()
    ref = create_model("vit_tiny_test", num_classes=4, backend="reference").eval()
    ref.load_state_dict(model.state_dict())
    x = _images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models("*", include_tiny=False)
                                  if isinstance(get_preset(n).spec, VitSpec)])
def test_full_size_forward(name):
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(_images(1, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert F.softmax(out, -1).sum().item() == pytest.approx(1.0)
