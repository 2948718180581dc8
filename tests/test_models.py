"""The backbone contract, checked on EVERY registered preset (timm's habit: one parametrized suite).

Presets are read from the registry at collection time: tiny test variants run in the default suite, full-size
ones are marked ``slow`` (``pytest -m slow``). Per preset: forward shape, backward reaches every parameter with a
finite gradient, ``forward_intermediates`` vs ``feature_info``, gradient checkpointing changes nothing, eval-mode
determinism, ``reset_classifier``, a second input resolution. A family still being written just adds no cases.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from visionattn.models import create_model, get_preset, list_models

NUM_CLASSES = 7
BATCH = 2


def _params():
    out = []
    for name in list_models():
        marks = () if get_preset(name).tiny else (pytest.mark.slow,)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


PRESETS = _params()


def _build(name: str, num_classes: int = NUM_CLASSES, img_size: int | None = None, seed: int = 0, **overrides):
    """A preset with drop-path (and dropout, if the spec has such fields) switched off, seeded."""
    fields = {f.name for f in dataclasses.fields(get_preset(name).spec)}
    for knob in ("drop_path", "drop_path_rate", "drop_rate"):
        if knob in fields:
            overrides.setdefault(knob, 0.0)
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, img_size=img_size, **overrides)


def _images(size: int, seed: int = 1, batch: int = BATCH, name: str | None = None) -> torch.Tensor:
    """Random inputs of the preset's kind: images ``(B, 3, H, W)``, or clips ``(B, 3, T, H, W)`` of the preset's
    ``num_frames`` for video presets."""
    g = torch.Generator().manual_seed(seed)
    preset = None if name is None else get_preset(name)
    if preset is not None and getattr(preset.builder, "input_kind", "image") == "video":
        return torch.randn(batch, 3, preset.spec.num_frames, size, size, generator=g)  # (B, 3, T, H, W)
    return torch.randn(batch, 3, size, size, generator=g)  # (B, 3, H, W)


def _loss(logits: torch.Tensor) -> torch.Tensor:
    """A loss that depends on every logit with distinct weights (a plain sum can cancel through a softmax)."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(logits.shape, generator=g)
    return (logits * w).sum()


def _size(name: str) -> int:
    return get_preset(name).img_size


def _max_reduction(model) -> int:
    return max(info.reduction for info in model.feature_info)


@pytest.mark.parametrize("name", PRESETS)
def test_forward_backward(name):
    model = _build(name).train()
    out = model(_images(_size(name), name=name))
    assert out.shape == (BATCH, NUM_CLASSES), f"{name}: expected logits {(BATCH, NUM_CLASSES)}, got {tuple(out.shape)}"
    assert torch.isfinite(out).all(), f"{name}: non-finite logits"
    _loss(out).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient reaches {missing}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"


@pytest.mark.parametrize("name", PRESETS)
def test_intermediates_match_feature_info(name):
    model = _build(name).eval()
    size = _size(name)
    with torch.no_grad():
        maps = model.forward_intermediates(_images(size, name=name))
    info = model.feature_info
    assert len(maps) == len(info), f"{name}: {len(maps)} maps for {len(info)} feature_info entries"
    for i, (fmap, fi) in enumerate(zip(maps, info, strict=True)):
        expected = (BATCH, fi.num_chs, size // fi.reduction, size // fi.reduction)
        got = tuple(fmap.shape[:2] + fmap.shape[-2:])  # video maps (B, C, T', H, W): batch, channels, space
        assert got == expected, f"{name} stage {i}: expected {expected} from {fi}, got {got}"
        assert torch.isfinite(fmap).all()
    with torch.no_grad():
        last = model.forward_intermediates(_images(size, name=name), indices=1)
    assert len(last) == 1 and torch.equal(last[0], maps[-1])


@pytest.mark.parametrize("name", PRESETS)
def test_grad_checkpointing_changes_nothing(name):
    model = _build(name).train()
    x = _images(_size(name), name=name)
    results = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        out = model(x)
        _loss(out).backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out0, grads0), (out1, grads1) = results
    torch.testing.assert_close(out1, out0, rtol=1e-5, atol=1e-6)
    assert grads0.keys() == grads1.keys()
    for n in grads0:
        torch.testing.assert_close(grads1[n], grads0[n], rtol=1e-4, atol=1e-6, msg=f"{name}: gradient of {n}")


@pytest.mark.parametrize("name", PRESETS)
def test_eval_determinism_and_reset_classifier(name):
    model = _build(name).eval()
    x = _images(_size(name), name=name)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b), f"{name}: two eval forwards differ"
    model.reset_classifier(3)
    assert model.num_classes == 3
    with torch.no_grad():
        assert model(x).shape == (BATCH, 3)


@pytest.mark.parametrize("name", PRESETS)
def test_variable_resolution(name):
    size = _size(name)
    probe = _build(name)
    other = size + _max_reduction(probe)  # the next size every stage divides
    model = _build(name, img_size=other).eval()
    with torch.no_grad():
        out = model(_images(other, batch=1, name=name))
        maps = model.forward_intermediates(_images(other, batch=1, name=name))
    assert out.shape == (1, NUM_CLASSES) and torch.isfinite(out).all()
    for fmap, fi in zip(maps, model.feature_info, strict=True):
        assert fmap.shape[-2:] == (other // fi.reduction, other // fi.reduction), f"{name} at {other}: {fi}"


def test_unknown_name_lists_close_names():
    names = list_models()
    if not names:
        with pytest.raises(ValueError, match="unknown model"):
            create_model("vit_tiy")
        return
    target = "vit_tiny_patch16_224" if "vit_tiny_patch16_224" in names else names[0]
    typo = target[:5] + target[6:]  # drop one character
    with pytest.raises(ValueError, match="unknown model") as err:
        create_model(typo)
    assert target in str(err.value), str(err.value)
    if "vit_tiny_patch16_224" in names:
        with pytest.raises(ValueError, match="vit_tiny"):
            create_model("vit_tiy")


def test_unknown_override_is_a_value_error():
    names = list_models()
    if not names:
        pytest.skip("no preset registered yet")
    with pytest.raises(ValueError, match="unknown spec fields"):
        create_model(names[0], not_a_field=1)


def test_every_preset_is_collected():
    assert len(PRESETS) == len(list_models())


@pytest.mark.parametrize("name", PRESETS)
def test_one_stochastic_depth_rule(name):
    """Every family draws its per-block drop-path rates from ``layers.drop.drop_path_rates``, in block order."""
    from timm.layers import DropPath

    from visionattn.layers.drop import drop_path_rates

    fields = {f.name for f in dataclasses.fields(get_preset(name).spec)}
    if "drop_path" not in fields:
        pytest.skip(f"{name}: no drop_path knob")
    model = create_model(name, num_classes=NUM_CLASSES, drop_path=0.3)
    rates = []
    for unit in model.fsdp_units():  # the repeated blocks, in order
        paths = [m for m in unit.modules() if isinstance(m, DropPath)]
        has_knob = any(n.startswith("drop_path") for n, _ in unit.named_children())
        if has_knob:
            rates.append(paths[0].drop_prob if paths else 0.0)
    assert rates, f"{name}: no block with stochastic depth"
    torch.testing.assert_close(torch.tensor(rates), torch.tensor(drop_path_rates(0.3, len(rates))))


def test_drop_path_rates():
    from visionattn.layers.drop import drop_path_rates

    assert drop_path_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(0.2, 1) == [0.0] and drop_path_rates(0.2, 0) == []
    with pytest.raises(ValueError, match="rate ≥ 0"):
        drop_path_rates(-0.1, 3)


def test_stage_drop_path_rates_cut_the_network_rule_per_stage():
    from visionattn.layers.drop import stage_drop_path_rates

    stages = stage_drop_path_rates(0.3, (2, 1, 3))
    assert [len(s) for s in stages] == [2, 1, 3]
    assert sum(stages, []) == pytest.approx([0.0, 0.06, 0.12, 0.18, 0.24, 0.3])


def test_registry_imports_no_family_and_old_paths_still_work():
    """The registry ↔ families cycle is gone: registry.py imports no family (the package imports the families after
    it); each family is one module (spec, class, converter, presets), and the old module paths re-export them."""
    import ast
    import importlib
    from pathlib import Path

    import visionattn.models.registry as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "families" in m], imported
    for old, new, names in (("swin", "swin", ["Swin", "SwinSpec", "stage_window"]),
                            ("resnet", "resnet", ["ResNet", "ResNetSpec", "build_stages"]),
                            ("coatnet", "coatnet", ["CoAtNet", "CoAtNetSpec", "DownsampleTransformerBlock"]),
                            ("hybrid_vit", "hybrid_vit", ["HybridViT", "HybridViTSpec"])):
        shim = importlib.import_module(f"visionattn.models.{old}")
        family = importlib.import_module(f"visionattn.models.families.{new}")
        assert all(getattr(shim, n) is getattr(family, n) for n in names)
    for name in list_models():  # every preset's builder lives in its family's module, beside its presets
        builder = get_preset(name).builder
        assert builder.__module__.startswith("visionattn.models.families."), (name, builder.__module__)
