"""SETR's decoders against the paper's equations (Zheng et al. 2021, section 3.3), written out here with
``torch.nn.functional`` on fixed seeded tensors: no public twin exists, so the equations are the reference. Forward
and backward (input and weight gradients), BatchNorm in eval mode with random running statistics and in train mode
with batch statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionattn.tasks.segmentation.decoders import MLAHead, NaiveHead, PUPHead, build_decoder, pup_steps

EPS_LN, EPS_BN = 1e-6, 1e-5


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and BN running statistic random (so no identity / zero weight hides a wrong equation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def ln(x, norm):
    """LayerNorm over channels at each position of (B, C, H, W)."""
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, EPS_LN).permute(0, 3, 1, 2)


def cbr(x, block, training):
    """conv (no bias) → BatchNorm → ReLU, from the block's tensors."""
    conv, bn = block[0], block[1]
    y = F.conv2d(x, conv.weight, None, padding=conv.weight.shape[-1] // 2)
    y = F.batch_norm(y, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, training, 0.0, EPS_BN)
    return F.relu(y)


def up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def naive_equation(head, z, size, training):
    """Naive: 1x1 conv-BN-ReLU → 1x1 conv to classes → bilinear upsampling to the image."""
    y = cbr(ln(z, head.norm), head.conv, training)
    return up(F.conv2d(y, head.cls.weight, head.cls.bias), size)


def pup_equation(head, z, size, training):
    """PUP at stride 16: four (3x3 conv-BN-ReLU, 2x bilinear) stages reach the full size, then a 1x1 conv."""
    x = ln(z, head.norm)
    h, w = z.shape[-2:]
    x = up(cbr(x, head.stages[0], training), (2 * h, 2 * w))
    x = up(cbr(x, head.stages[1], training), (4 * h, 4 * w))
    x = up(cbr(x, head.stages[2], training), (8 * h, 8 * w))
    x = up(cbr(x, head.stages[3], training), size)
    return F.conv2d(x, head.cls.weight, head.cls.bias)


def mla_equation(head, zs, size, training):
    """MLA with 4 streams (shallow → deep): a_m = 1x1 conv(Z_m); top-down b_4 = a_4, b_3 = a_3 + b_4, b_2 = a_2 + b_3,
    b_1 = a_1 + b_2 (each deeper sum resized to the shallower grid); c_m = 3x3 conv(b_m); d_m = 3x3 conv(c_m) upsampled
    4x (to 4x the finest grid); concat(d_1..d_4) → 1x1 conv → bilinear to the image."""
    a1, a2, a3, a4 = (cbr(ln(z, n), r, training) for z, n, r in zip(zs, head.norms, head.reduce, strict=True))
    b4 = a4
    b3 = a3 + up(b4, a3.shape[-2:])
    b2 = a2 + up(b3, a2.shape[-2:])
    b1 = a1 + up(b2, a1.shape[-2:])
    hf, wf = max((b.shape[-2:] for b in (b1, b2, b3, b4)), key=lambda s: s[0] * s[1])
    d = [up(cbr(cbr(b, agg, training), ref, training), (min(4 * hf, size[0]), min(4 * wf, size[1])))
         for b, agg, ref in zip((b1, b2, b3, b4), head.aggregate, head.refine, strict=True)]
    return up(F.conv2d(torch.cat(d, 1), head.cls.weight, head.cls.bias), size)


def _compare(head, equation, inputs, size, training):
    head.train(training)
    xs = [x.clone().requires_grad_(True) for x in inputs]
    ys = [x.clone().requires_grad_(True) for x in inputs]
    out = head(xs, size)
    ref = equation(head, ys if len(ys) > 1 else ys[0], size, training)
    assert out.shape == ref.shape == (inputs[0].shape[0], head.num_classes, *size)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    params = list(head.parameters())
    got = torch.autograd.grad(out, xs + params, g)
    want = torch.autograd.grad(ref, ys + params, g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert out.std() > 0.1  # not a degenerate (constant) output


@pytest.mark.parametrize("training", [False, True])
def test_naive_head_is_the_papers_equation(training):
    head = NaiveHead(12, num_classes=5, channels=8)
    _randomise(head, 0)
    z = torch.randn(2, 12, 4, 6, generator=torch.Generator().manual_seed(1))
    _compare(head, naive_equation, [z], (64, 96), training)


@pytest.mark.parametrize("training", [False, True])
def test_pup_head_is_the_papers_equation(training):
    head = PUPHead(12, reduction=16, num_classes=4, channels=6)
    assert len(head.stages) == 4  # SETR-PUP at stride 16: four 2x steps
    _randomise(head, 2)
    z = torch.randn(2, 12, 3, 4, generator=torch.Generator().manual_seed(3))
    _compare(head, pup_equation, [z], (48, 64), training)


@pytest.mark.parametrize("training", [False, True])
def test_mla_head_is_the_papers_equation_single_scale(training):
    head = MLAHead([12, 12, 12, 12], num_classes=3, channels=8)
    _randomise(head, 4)
    g = torch.Generator().manual_seed(5)
    zs = [torch.randn(2, 12, 4, 4, generator=g) for _ in range(4)]
    _compare(head, mla_equation, zs, (64, 64), training)


def test_mla_head_is_the_papers_equation_on_multi_scale_features():
    """Swin/ResNet-like strides 4, 8, 16, 32: top-down sums resize the deeper map to the shallower one, streams meet
    at 4x the finest grid (capped at the image)."""
    head = MLAHead([4, 8, 16, 32], num_classes=3, channels=6)
    _randomise(head, 6)
    g = torch.Generator().manual_seed(7)
    zs = [torch.randn(2, c, 32 // s, 32 // s, generator=g) for c, s in zip([4, 8, 16, 32], [4, 8, 16, 32],
                                                                             strict=True)]
    _compare(head, mla_equation, zs, (32, 32), False)


@pytest.mark.parametrize("reduction, steps", [(1, 1), (2, 1), (4, 2), (8, 3), (16, 4), (32, 5), (14, 4)])
def test_pup_steps_reach_the_image_in_2x_steps(reduction, steps):
    assert pup_steps(reduction) == steps
    head = PUPHead(8, reduction, num_classes=2, channels=4).eval()
    z = torch.randn(1, 8, 3, 5)
    assert head([z], (3 * reduction, 5 * reduction)).shape == (1, 2, 3 * reduction, 5 * reduction)


def test_decoder_builder_refuses_wrong_inputs():
    with pytest.raises(ValueError, match=r"decoder: expected one of \('naive', 'pup', 'mla'\), got 'fpn'"):
        build_decoder("fpn", [8], [16], 3, 8)
    with pytest.raises(ValueError, match="the pup decoder reads one feature map, got 2"):
        build_decoder("pup", [8, 8], [16, 16], 3, 8)
    with pytest.raises(ValueError, match="MLAHead reads 4 feature map"):
        MLAHead([8] * 4, 3, 8)([torch.zeros(1, 8, 2, 2)] * 3, (8, 8))
