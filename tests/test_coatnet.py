"""CoAtNet: MBConv, the downsampling Transformer block, the Backbone contract on ``coatnet_test``, relative tables
sized for ``img_size``, size errors, and CoAtNet-0's layout (paper: 25M parameters, C-C-T-T)."""

from __future__ import annotations

import pytest
import torch

from visionattn.layers.attention import Attention
from visionattn.layers.mbconv import MBConv
from visionattn.layers.resize import resize_relative
from visionattn.models import create_model, get_preset
from visionattn.models.coatnet import CoAtNetSpec, DownsampleTransformerBlock
from visionattn.ops.patterns import Global


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(b: int, h: int, w: int | None = None) -> torch.Tensor:
    return torch.randn(b, 3, h, w or h, generator=torch.Generator().manual_seed(1))


def test_mbconv_shapes_and_errors():
    block = MBConv(8, 16, stride=2).eval()
    assert block(torch.randn(2, 8, 12, 10)).shape == (2, 16, 6, 5)
    same = MBConv(16, 16).eval()
    assert same(torch.randn(2, 16, 7, 5)).shape == (2, 16, 7, 5)
    assert isinstance(same.shortcut_proj, torch.nn.Identity)
    with pytest.raises(ValueError, match="even H×W, got 7×6"):
        block(torch.randn(1, 8, 7, 6))
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        MBConv(8, 8, stride=3)


def test_downsample_transformer_block():
    spec = CoAtNetSpec(head_dim=8)
    block = DownsampleTransformerBlock(8, 16, heads=2, grid_size=(3, 4), spec=spec, drop_path=0.0)
    x = torch.randn(2, 6, 8, 8, requires_grad=True)  # (B, H, W, in_dim) channels-last
    out = block(x)
    assert out.shape == (2, 3, 4, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())


def test_forward_intermediates_and_feature_info():
    model = create_model("coatnet_test", num_classes=7).eval()
    x = _images(2, 64)
    assert model(x).shape == (2, 7)
    maps = model.forward_intermediates(x)
    assert [(m.shape[1], 64 // m.shape[2], 64 // m.shape[3]) for m in maps] == [
        (info.num_chs, info.reduction, info.reduction) for info in model.feature_info
    ]
    assert [info.reduction for info in model.feature_info] == [4, 8, 16, 32]
    assert [m.shape[1] for m in model.forward_intermediates(x, indices=[1, 3])] == [16, 64]
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 64)
    model.reset_classifier(0)
    assert model(x).shape == (2, 64)


def test_attention_is_the_shared_layer_with_relative_bias():
    model = create_model("coatnet_test")
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    assert len(attns) == 3  # stage 2: downsampling block + 1, stage 3: downsampling block
    assert all(a.pattern == Global() for a in attns)
    # tables cover the 4×4 and 2×2 grids of stages 2 and 3 at 64 px: offsets ±3 and ±1
    assert [tuple(a.position.table.shape[1:]) for a in attns] == [(7, 7), (7, 7), (3, 3)]


def test_backward_reaches_every_parameter_and_checkpointing_matches():
    model = create_model("coatnet_test", num_classes=5).train()
    x = _images(2, 64)
    out = model(x)
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)  # train-mode BN normalises by batch statistics: the recompute matches
    out2 = model(x)
    out2.square().sum().backward()
    torch.testing.assert_close(out2, out)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_eval_is_deterministic_and_finite():
    model = create_model("coatnet_test").eval()
    x = _images(2, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_variable_resolution():
    model = create_model("coatnet_test", num_classes=3).eval()
    with torch.no_grad():
        assert model(_images(1, 32, 64)).shape == (1, 3)  # smaller grids: the tables cover them
        out = model(_images(1, 96))  # larger grids: the tables are interpolated
    big = create_model("coatnet_test", num_classes=3, img_size=96).eval()
    assert tuple(big.stages[2].blocks[0].attn.position.table.shape[1:]) == (11, 11)  # 6×6 grid: ±5
    # a 96 input equals a model built for 96 whose tables are the interpolated ones
    state = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            radius = big.get_submodule(name).position.radius
            state[f"{name}.position.table"] = resize_relative(module.position.descriptor(), radius).table.detach()
    big.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(big(_images(1, 96)), out, rtol=0, atol=0)
    assert out.abs().max() > 0.1


def test_bad_sizes_and_specs_raise():
    model = create_model("coatnet_test")
    with pytest.raises(ValueError, match=r"48×64 must be a multiple of 32.*48 % 32 = 16"):
        model(_images(1, 48, 64))
    with pytest.raises(ValueError, match=r"img_size 100×100 must be a multiple of 32"):
        create_model("coatnet_test", img_size=100)
    with pytest.raises(ValueError, match=r"blocks\[1\].*'conv'"):
        CoAtNetSpec(blocks=("mbconv", "conv", "transformer", "transformer"))
    with pytest.raises(ValueError, match="head_dim"):
        CoAtNetSpec(head_dim=100)


def test_coatnet_0_layout():
    preset = get_preset("coatnet_0_224")
    assert (preset.taxonomy.purity, preset.taxonomy.block) == ("hybrid", "mixed")
    model = create_model("coatnet_0_224")
    assert [s.kind for s in model.stages] == ["mbconv", "mbconv", "transformer", "transformer"]
    assert [len(s.blocks) for s in model.stages] == [2, 3, 5, 2]
    assert [info.num_chs for info in model.feature_info] == [96, 192, 384, 768]
    assert model.stem[0].out_channels == 64 and model.stem[0].stride == (2, 2)
    assert model.stages[2].blocks[1].attn.heads == 12  # head size 32
    assert tuple(model.stages[2].blocks[1].attn.position.table.shape) == (12, 27, 27)  # 14×14 grid
    params = sum(p.numel() for p in model.parameters())
    assert 23e6 < params < 28e6  # paper: 25M


@pytest.mark.slow
def test_coatnet_0_forward():
    model = create_model("coatnet_0_224").eval()
    with torch.no_grad():
        out = model(_images(1, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
