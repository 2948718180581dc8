"""SETR over the backbone contract: one head contract for ViT at any input size and for the multi-scale Swin, HaloNet
and ResNet presets; stage selection (MLA's evenly spaced layers), auxiliary heads, padding to the patch size, and
the torchvision baselines behind the same interface."""

from __future__ import annotations

import pytest
import torch

from visionattn.models import create_model
from visionattn.tasks.segmentation.baselines import build_torchvision_baseline
from visionattn.tasks.segmentation.model import TrainForward, build_segmentation_model, evenly_spaced

VIT = dict(patch=8, dim=32, depth=4, heads=2)


def _vit(img_size=32):
    return create_model("vit_tiny_test", num_classes=0, img_size=img_size, **VIT)


@pytest.mark.parametrize("decoder", ["naive", "pup", "mla"])
@pytest.mark.parametrize("size", [(32, 32), (48, 64), (40, 24)])
def test_vit_setr_at_any_input_size(decoder, size):
    """Trained at 32x32, run at other sizes (position table interpolated); 40x24 is a multiple of the patch 8."""
    torch.manual_seed(0)
    model = build_segmentation_model(_vit(), decoder, num_classes=5, channels=8).eval()
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert logits.shape == (2, 5, *size)
    assert torch.isfinite(logits).all()


def test_inputs_that_are_not_multiples_of_the_patch_are_padded_and_cropped_back():
    """A 37x29 image runs as 40x32 (the patch is 8) with a padding mask, its logits cropped back: equal to those of
    the image zero-padded by hand and given that mask."""
    torch.manual_seed(0)
    model = build_segmentation_model(_vit(), "naive", num_classes=3, channels=8).eval()
    x = torch.randn(1, 3, 37, 29)
    out = model(x)
    assert out.shape == (1, 3, 37, 29)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3))
    mask = torch.ones(1, 40, 32, dtype=torch.bool)
    mask[:, :37, :29] = False
    torch.testing.assert_close(model(padded, mask)[..., :37, :29], out)


@pytest.mark.parametrize("name, size", [("swin_test", 64), ("halonet_test", 64), ("resnet_test", 32)])
@pytest.mark.parametrize("decoder", ["naive", "pup", "mla"])
def test_multi_scale_backbones_take_the_same_heads(name, size, decoder):
    torch.manual_seed(0)
    backbone = create_model(name, num_classes=0, img_size=size)
    strides = [f.reduction for f in backbone.feature_info]
    assert len(set(strides)) == 4  # four scales: 4..32
    model = build_segmentation_model(backbone, decoder, num_classes=4, channels=8)
    if decoder == "mla":
        assert model.head_stages == [0, 1, 2, 3]  # all four scales, shallow to deep
    x = torch.randn(2, 3, size, size)
    logits, aux = TrainForward(model)(x)
    assert logits.shape == (2, 4, size, size) and aux == []
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    stem_grads = [p.grad for p in backbone.parameters() if p.grad is not None]
    assert stem_grads and any(g.abs().sum() > 0 for g in stem_grads)


def test_evenly_spaced_stages_follow_setr():
    assert evenly_spaced(24, 4) == [5, 11, 17, 23]  # SETR-MLA on ViT-L: layers 6, 12, 18, 24
    assert evenly_spaced(12, 4) == [2, 5, 8, 11]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="4 evenly spaced stages need a backbone with at least 4 stages, got 2"):
        evenly_spaced(2, 4)


def test_mla_reads_the_evenly_spaced_stages_and_aux_heads_their_own():
    torch.manual_seed(0)
    model = build_segmentation_model(create_model("vit_tiny_test", num_classes=0, patch=8, dim=32, depth=8, heads=2),
                                     "mla", num_classes=3, channels=8, aux_stages=[1, -3])
    assert model.head_stages == [1, 3, 5, 7] and model.aux_stages == [1, 5]
    seen = []
    backbone_call = model.backbone.forward_intermediates

    def spy(x, indices=None, padding_mask=None):
        seen.append(list(indices))
        return backbone_call(x, indices=indices, padding_mask=padding_mask)

    model.backbone.forward_intermediates = spy
    logits, aux = model.forward_train(torch.randn(2, 3, 32, 32))
    assert seen[-1] == [1, 3, 5, 7] and len(aux) == 2 and all(a.shape == logits.shape for a in aux)
    model(torch.randn(1, 3, 32, 32))
    assert seen[-1] == [1, 3, 5, 7]  # inference does not run the auxiliary heads
    (logits.mean() + sum(a.mean() for a in aux)).backward()
    assert all(p.grad is not None for h in model.aux_heads for p in h.parameters())


def test_bad_stage_choices_are_named():
    with pytest.raises(ValueError, match="the naive decoder reads one stage, got stages"):
        build_segmentation_model(_vit(), "naive", 3, stages=[0, 1])
    with pytest.raises(ValueError, match="stage index 9 is out of range for a backbone with 4 stages"):
        build_segmentation_model(_vit(), "pup", 3, stages=[9])
    with pytest.raises(ValueError, match="MLA streams need distinct stages"):
        build_segmentation_model(_vit(), "mla", 3, stages=[1, 1, 2, 3])
    with pytest.raises(ValueError, match="4 evenly spaced stages need a backbone with at least 4 stages, got 2"):
        build_segmentation_model(create_model("vit_tiny_test", num_classes=0), "mla", 3)


def test_no_weight_decay_names_the_backbone_positions():
    model = build_segmentation_model(_vit(), "pup", 3, channels=8)
    names = dict(model.named_parameters())
    assert {"backbone.pos_embed.weight", "backbone.cls_token"} <= model.no_weight_decay() <= set(names)


@pytest.mark.parametrize("name", ["torchvision.fcn_resnet50",
                                  pytest.param("torchvision.deeplabv3_resnet50", marks=pytest.mark.slow)])
def test_torchvision_baselines_share_the_interface(name):
    torch.manual_seed(0)
    model = build_torchvision_baseline(name, 2, {"aux_loss": name.endswith("fcn_resnet50")})
    x = torch.randn(2, 3, 32, 32)
    logits, aux = model.forward_train(x)
    assert logits.shape == (2, 2, 32, 32) and len(aux) == int(name.endswith("fcn_resnet50"))
    with pytest.raises(ValueError, match="may only set aux_loss, got \\['depth'\\]"):
        build_torchvision_baseline(name, 2, {"depth": 3})


def test_parameters_the_segmentation_forward_never_uses_are_frozen():
    """The backbone's final norm (only forward_features applies it) and stages after the deepest one read: frozen,
    so that DDP (every trained parameter must get a gradient) and weight decay leave them alone; BN statistics and
    the RNG are untouched by the probe."""
    from visionattn.tasks.segmentation.model import freeze_unused

    torch.manual_seed(0)
    model = build_segmentation_model(_vit(), "pup", 3, channels=8, stages=[1])
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    state = torch.get_rng_state()
    frozen = freeze_unused(model, 32)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    assert set(frozen) == {n for n, _ in model.named_parameters()
                           if n.startswith(("backbone.norm.", "backbone.stages.2.", "backbone.stages.3."))}
    assert all(p.requires_grad == (n not in frozen) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
