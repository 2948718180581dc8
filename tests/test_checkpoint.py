"""Checkpoint import: timm / DINO ViT state dicts (random weights, saved locally as .pth and .safetensors) load
into our presets and give timm's logits within 1e-5 relative (fp32); wrong or broken files fail clearly."""

from __future__ import annotations

import argparse

import pytest
import safetensors.torch
import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn

from visionattn.models import create_model
from visionattn.models.checkpoint import load_pretrained, read_state_dict


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the machine's 2 cores are shared with other test runs (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded noise on every parameter: no zero biases, no identity LayerNorms, no near-zero tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _images(b: int, size: int) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(3))


def _assert_matches(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Within 1e-5 relative to the largest reference value (fp32)."""
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def _save(state_dict: dict, path) -> str:
    if str(path).endswith(".safetensors"):
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save(state_dict, path)
    return str(path)


@pytest.fixture(scope="module")
def timm_tiny():
    """timm ViT-Ti/16 with random weights, and its logits on two random 224 images."""
    model = _randomise(timm.create_model("vit_tiny_patch16_224", pretrained=False), seed=10)
    x = _images(2, 224)
    with torch.no_grad():
        return model, x, model(x)


@pytest.fixture(scope="module")
def timm_dino_small():
    """A DINO-like ViT-S/16 backbone (timm, num_classes=0, random weights) and its features on one image."""
    model = _randomise(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0), seed=11)
    x = _images(1, 224)
    with torch.no_grad():
        return model, x, model(x)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_vit_tiny_matches(timm_tiny, tmp_path, suffix):
    ref_model, x, ref = timm_tiny
    path = _save(ref_model.state_dict(), tmp_path / f"vit_tiny{suffix}")
    model = create_model("vit_tiny_patch16_224", pretrained_path=path).eval()
    with torch.no_grad():
        _assert_matches(model(x), ref)


def test_timm_deit_distilled_matches(tmp_path):
    ref_model = _randomise(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False), seed=12)
    x = _images(2, 224)
    path = _save(ref_model.state_dict(), tmp_path / "deit_distilled.pth")
    model = create_model("deit_tiny_distilled_patch16_224", pretrained_path=path).eval()
    with torch.no_grad():
        ours, ref = model(x), ref_model(x)  # eval: average of the two heads
        _assert_matches(ours, ref)
        ref_model.set_distilled_training(True)
        ref_cls, ref_dist = ref_model.train()(x)  # timm's separate heads (no dropout: train == eval)
        cls_logits, dist_logits = model.forward_distill(x)
    _assert_matches(cls_logits, ref_cls)
    _assert_matches(dist_logits, ref_dist)


def test_dino_training_checkpoint_teacher(timm_dino_small, tmp_path):
    """DINO's training checkpoint: {'teacher': {'module.backbone.*', 'module.head.*'}, 'student', 'args', ...}."""
    ref_model, x, ref = timm_dino_small
    teacher = {f"module.backbone.{k}": v for k, v in ref_model.state_dict().items()}
    teacher["module.head.mlp.0.weight"] = torch.randn(16, 384)  # the DINO projection head: not the backbone
    student = {k: torch.zeros_like(v) for k, v in teacher.items()}
    path = tmp_path / "dino_full_checkpoint.pth"
    torch.save({"teacher": teacher, "student": student, "epoch": 3, "args": argparse.Namespace(arch="vit_small")},
               path)
    model = create_model("dino_vit_small_patch16", num_classes=0, pretrained_path=str(path)).eval()
    with torch.no_grad():
        _assert_matches(model(x), ref)  # (B, 384) class-token features


def test_dino_backbone_only_safetensors(timm_dino_small, tmp_path):
    ref_model, x, ref = timm_dino_small
    path = _save(ref_model.state_dict(), tmp_path / "dino_deitsmall16_pretrain.safetensors")
    model = create_model("dino_vit_small_patch16", num_classes=0, pretrained_path=path).eval()
    with torch.no_grad():
        _assert_matches(model(x), ref)


def test_position_embedding_resized_like_timm(timm_tiny, tmp_path):
    """A 224 checkpoint loaded into a 160 model: our resize equals timm's checkpoint filter."""
    ref_model, _, _ = timm_tiny
    path = _save({"model": ref_model.state_dict()}, tmp_path / "vit_tiny_wrapped.pth")
    ref160 = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=160).eval()
    ref160.load_state_dict(checkpoint_filter_fn(ref_model.state_dict(), ref160))
    model = create_model("vit_tiny_patch16_224", img_size=160, pretrained_path=path).eval()
    assert model.pos_embed.weight.shape == (1, 10, 10, 192)
    x = _images(2, 160)
    with torch.no_grad():
        _assert_matches(model(x), ref160(x))


def test_own_checkpoint_round_trip(tmp_path):
    model = _randomise(create_model("deit_tiny_distilled_test", num_classes=5), seed=13)
    path = _save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ours.pt")
    loaded = create_model("deit_tiny_distilled_test", num_classes=5, pretrained_path=path).eval()
    x = _images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


# -- failures -----------------------------------------------------------------------------------------------
def test_wrong_architecture_lists_shape_mismatches(timm_dino_small, tmp_path):
    ref_model, _, _ = timm_dino_small  # ViT-S (384 channels) into ViT-Ti (192)
    path = _save(ref_model.state_dict(), tmp_path / "vit_small.pth")
    with pytest.raises(ValueError) as info:
        create_model("vit_tiny_patch16_224", num_classes=0, pretrained_path=path)
    message = str(info.value)
    assert "vit_small.pth" in message and "vit_tiny_patch16_224 (VisionTransformer)" in message
    assert "shape mismatches" in message
    assert "cls_token: expected (1, 1, 192), got (1, 1, 384)" in message
    assert "stages.0.attn.qkv.weight: expected (576, 192), got (1152, 384)" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_missing_and_unexpected_keys_are_listed(timm_tiny, tmp_path):
    ref_model, _, _ = timm_tiny  # plain ViT-Ti into the distilled DeiT-Ti: no dist token / head_dist
    path = _save(ref_model.state_dict(), tmp_path / "vit_tiny.safetensors")
    with pytest.raises(ValueError) as info:
        create_model("deit_tiny_distilled_patch16_224", num_classes=1000, pretrained_path=path)
    message = str(info.value)
    assert "dist_token (1, 1, 192)" in message and "head_dist.weight (1000, 192)" in message
    # the 1 + 196 position table cannot hold 2 prefix tokens + a square grid: left unconverted, reported
    assert "unexpected keys (1):\n    pos_embed (1, 197, 192)" in message
    assert "prefix_pos (1, 2, 192)" in message and "pos_embed.weight (1, 14, 14, 192)" in message

    state = ref_model.state_dict()
    state["blocks.0.attn.extra"] = torch.ones(3)
    del state["norm.bias"]
    path = _save(state, tmp_path / "vit_tiny_extra.pth")
    with pytest.raises(ValueError) as info:
        create_model("vit_tiny_patch16_224", pretrained_path=path)
    message = str(info.value)
    assert "missing keys (1):\n    norm.bias (192,)" in message
    assert "unexpected keys (1):\n    stages.0.attn.extra (3,)" in message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    model = create_model("vit_tiny_test")
    full = _save(model.state_dict(), tmp_path / f"full{suffix}")
    data = open(full, "rb").read()
    cut = tmp_path / f"truncated{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"could not read checkpoint '.*truncated\{suffix}'"):
        load_pretrained(model, cut)


def test_other_unreadable_inputs(tmp_path):
    model = create_model("vit_tiny_test")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_pretrained(model, tmp_path / "nowhere.pth")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported suffix '.npz'"):
        load_pretrained(model, tmp_path / "weights.npz")
    torch.save({"epoch": 3, "model": {"note": "no tensors"}}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="holds no state dict of tensors"):
        load_pretrained(model, tmp_path / "empty.pth")
    torch.save({"w": torch.ones(1), "obj": _Pickled()}, tmp_path / "pickled.pth")  # refused by weights_only
    with pytest.raises(ValueError, match="could not read checkpoint .*pickled.pth"):
        read_state_dict(tmp_path / "pickled.pth")


class _Pickled:
    pass


@pytest.mark.slow
@pytest.mark.parametrize(
    "timm_name, ours, num_classes",
    [
        ("vit_base_patch16_224", "vit_base_patch16_224", 1000),
        ("vit_small_patch8_224", "vit_small_patch8_224", 1000),
        ("deit_small_distilled_patch16_224", "deit_small_distilled_patch16_224", 1000),
        ("deit_base_distilled_patch16_224", "deit_base_distilled_patch16_224", 1000),
        ("vit_base_patch16_224", "dino_vit_base_patch16", 0),
    ],
)
def test_full_size_checkpoints_match(tmp_path, timm_name, ours, num_classes):
    ref_model = _randomise(timm.create_model(timm_name, pretrained=False, num_classes=num_classes), seed=14)
    path = _save(ref_model.state_dict(), tmp_path / f"{timm_name}.safetensors")
    model = create_model(ours, num_classes=num_classes, pretrained_path=path).eval()
    x = _images(1, 224)
    with torch.no_grad():
        _assert_matches(model(x), ref_model(x))
