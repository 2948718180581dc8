"""Video backbones (ViViT's four variants, TimeSformer, Video Swin): equal to their trusted twins with converted
weights (Hugging Face ``VivitForVideoClassification`` / ``TimesformerForVideoClassification``, torchvision
``SwinTransformer3d``), each variant's attention calls are the patterns it claims on the grids it claims, the
factorised patterns equal the reshape-per-frame / per-position way of writing them (forward and backward), image-ViT
inflation gives the image model back on a static clip, padded clips equal the clip alone, the backbone contract on
clips, bad clips named, and the cost model's GMACs of ViViT-B against the paper's comparison table."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from visionattn.layers import Attention
from visionattn.models import create_model, get_preset, list_models
from visionattn.models.families.video_blocks import HeadSplitAttention, frame_window
from visionattn.models.flops import count_flops
from visionattn.ops import BACKENDS, Axial, Global, Window, intercept_attention

VIDEO = [n for n in list_models("*_test") if getattr(get_preset(n).builder, "input_kind", "image") == "video"]
VIVIT = [n for n in VIDEO if n.startswith(("vivit", "timesformer"))]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, seed: int = 0, **overrides):
    fields = {f.name for f in dataclasses.fields(get_preset(name).spec)}
    overrides.update({k: 0.0 for k in ("drop_path", "drop_rate") if k in fields})
    torch.manual_seed(seed)
    return create_model(name, num_classes=5, **overrides)


def _clips(b: int = 2, t: int = 4, h: int = 32, w: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed))  # (B, 3, T, H, W)


def _perturb(module: nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """Seeded noise on every parameter (no zero position tables, class tokens or biases left)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max().detach() / b.abs().max().detach())


# -- trusted twins ------------------------------------------------------------------------------------------------
def test_equals_hf_vivit_model():
    """ViViT model 1 (spatio-temporal) with weights converted from HF ``VivitForVideoClassification`` at random init:
    logits, final hidden states and input gradients within 1e-4 relative."""
    transformers = pytest.importorskip("transformers")
    VivitConfig, VivitForVideoClassification = transformers.VivitConfig, transformers.VivitForVideoClassification

    torch.manual_seed(0)
    cfg = VivitConfig(image_size=32, num_frames=4, tubelet_size=[2, 8, 8], hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=128, num_labels=5)  # hidden_act: gelu_fast
    hf = VivitForVideoClassification(cfg).eval()
    _perturb(hf)
    ours = _build("vivit_spatiotemporal_test", mlp_act="gelu_tanh").eval()
    ours.load_state_dict(ours.convert_state_dict(hf.state_dict()), strict=True)
    x = _clips()
    xa, xb = x.clone().requires_grad_(), x.transpose(1, 2).clone().requires_grad_()  # HF takes (B, T, C, H, W)
    ref = hf(pixel_values=xb)
    got = ours(xa)
    assert _rel(got, ref.logits) < 1e-4
    assert _rel(ours.forward_features(x), hf.vivit(pixel_values=x.transpose(1, 2)).last_hidden_state) < 1e-4
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(3))
    (got * w).sum().backward()
    (ref.logits * w).sum().backward()
    assert _rel(xa.grad, xb.grad.transpose(1, 2)) < 1e-4


def test_equals_hf_timesformer():
    """TimeSformer divided attention with weights converted from HF ``TimesformerForVideoClassification``: logits and
    hidden states (HF orders tokens space-major: class, then (h, w, t); ours (t, h, w)) within 1e-4 relative."""
    transformers = pytest.importorskip("transformers")
    TimesformerConfig = transformers.TimesformerConfig
    TimesformerForVideoClassification = transformers.TimesformerForVideoClassification

    torch.manual_seed(0)
    cfg = TimesformerConfig(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=128, num_labels=5)
    hf = TimesformerForVideoClassification(cfg).eval()
    _perturb(hf)
    ours = _build("timesformer_test").eval()
    ours.load_state_dict(ours.convert_state_dict(hf.state_dict()), strict=True)
    x = _clips()
    xa, xb = x.clone().requires_grad_(), x.transpose(1, 2).clone().requires_grad_()
    ref = hf(pixel_values=xb).logits
    got = ours(xa)
    assert _rel(got, ref) < 1e-4
    with torch.no_grad():
        feats = ours.forward_features(x)  # (B, 1 + T·H·W, C), tokens in (t, h, w) order
        hidden = hf.timesformer(pixel_values=x.transpose(1, 2)).last_hidden_state
    tokens = feats[:, 1:].reshape(2, 4, 4, 4, 32).permute(0, 2, 3, 1, 4).reshape(2, -1, 32)  # (h, w, t) order
    assert _rel(torch.cat([feats[:, :1], tokens], dim=1), hidden) < 1e-4
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(3))
    (got * w).sum().backward()
    (ref * w).sum().backward()
    assert _rel(xa.grad, xb.grad.transpose(1, 2)) < 1e-4


@pytest.mark.parametrize("size", [(4, 32, 32), (8, 64, 64)], ids=["built", "shifted-windows"])
def test_equals_torchvision_swin3d(size):
    """Video Swin with weights converted from torchvision's ``SwinTransformer3d`` (swin3d_t's code) at random init:
    logits within 1e-4 relative, at the built size and at one where every stage-0 block has whole shifted 3-D
    windows (grid (4, 16, 16), windows (2, 4, 4), shift (1, 2, 2))."""
    from torchvision.models.video.swin_transformer import SwinTransformer3d

    torch.manual_seed(0)
    tv = SwinTransformer3d(patch_size=[2, 4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=[2, 4, 4],
                           stochastic_depth_prob=0.0, num_classes=5).eval()
    _perturb(tv)
    ours = _build("video_swin_test").eval()
    ours.load_state_dict(ours.convert_state_dict(tv.state_dict()), strict=True)
    x = _clips(2, *size)
    with torch.no_grad():
        assert _rel(ours(x), tv(x)) < 1e-4


# -- the patterns each variant runs ----------------------------------------------------------------------------------
def _calls(model, x, mask=None):
    calls = []

    def handler(call):
        calls.append(call)
        return BACKENDS["reference"].run(call)

    with torch.no_grad(), intercept_attention(handler):
        out = model.forward_features(x, padding_mask=mask)
    return calls, out


EXPECTED_CALLS = {  # per block on a (2, 4, 4) tubelet grid, 2 heads: (pattern, kv grid, heads) of each call
    "vivit_spatiotemporal_test": [(Global(), (33,), 2)],
    "vivit_factorised_self_attention_test": [(Window((1, 4, 4)), (2, 4, 4), 2), (Axial(0), (2, 4, 4), 2)],
    "vivit_factorised_dot_product_test": [(Window((1, 4, 4)), (2, 4, 4), 1), (Axial(0), (2, 4, 4), 1)],
    "timesformer_test": [(Axial(0), (4, 4, 4), 2), (Axial(1), (4, 17), 2)],
}


@pytest.mark.parametrize("name", VIVIT)
def test_each_variant_calls_its_patterns(name):
    model = _build(name).eval()
    calls, _ = _calls(model, _clips(1))
    got = [(c.pattern, c.kv_grid, c.heads) for c in calls]
    if name == "vivit_factorised_encoder_test":  # 2 frame blocks, then 1 temporal block over the 2 frame tokens
        assert got == [(Window((1, 4, 4)), (2, 4, 4), 2)] * 2 + [(Global(), (2,), 2)]
    else:
        assert got == EXPECTED_CALLS[name] * 2


def _twin_layers(pattern, seed=0):
    torch.manual_seed(seed)
    ours = Attention(24, 3, pattern, dims=3)
    plain = Attention(24, 3, Global(), dims=1)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


@pytest.mark.parametrize("which", ["frame", "time"])
def test_factorised_patterns_equal_reshaping_into_frames_or_tubes(which):
    """``Window((1, H, W))`` on (T, H, W) = Global attention on each frame's tokens (the clip reshaped to (B·T, H·W));
    ``Axial(0)`` = Global attention along each position's tube (reshaped to (B·H·W, T)); forward and backward."""
    B, T, H, W, C = 2, 3, 5, 4, 24
    x = torch.randn(B, T, H, W, C, generator=torch.Generator().manual_seed(1))
    ours, plain = _twin_layers(frame_window((T, H, W)) if which == "frame" else Axial(0))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = ours(xa)
    if which == "frame":
        ref = plain(xb.reshape(B * T, H * W, C)).reshape(B, T, H, W, C)
    else:
        tubes = xb.permute(0, 2, 3, 1, 4).reshape(B * H * W, T, C)  # (B·H·W, T, C)
        ref = plain(tubes).reshape(B, H, W, T, C).permute(0, 3, 1, 2, 4)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
    (got * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    for (n, p), q in zip(ours.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_head_split_attention_equals_the_written_out_math():
    """ViViT model 4's attention written out: one qkv projection; heads 0..h/2-1 softmax over the keys of their own
    frame, heads h/2..h-1 over their own position in every frame (dense masks); concatenated; one projection."""
    B, T, H, W, C, heads = 2, 3, 2, 3, 16, 4
    torch.manual_seed(0)
    layer = HeadSplitAttention(C, heads)
    x = torch.randn(B, T, H, W, C, generator=torch.Generator().manual_seed(1))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = layer(xa, patterns=(frame_window((T, H, W)), Axial(0)))
    q, k, v = layer.qkv(xb).reshape(B, T * H * W, 3, heads, C // heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d) each
    t, hw = torch.arange(T).repeat_interleave(H * W), torch.arange(H * W).repeat(T)  # frame / position per token
    same_frame, same_place = t[:, None] == t[None], hw[:, None] == hw[None]  # (N, N)
    allowed = torch.stack([same_frame] * (heads // 2) + [same_place] * (heads // 2))  # (h, N, N)
    logits = (q @ k.transpose(-1, -2)) * (C // heads) ** -0.5
    probs = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # (B, h, N, N)
    ref = layer.proj((probs @ v).permute(0, 2, 1, 3).reshape(B, T, H, W, C))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
    (got * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected 2 patterns"):
        layer(x, patterns=(Axial(0),))
    with pytest.raises(ValueError, match="heads 3 must split into 2 equal groups"):
        HeadSplitAttention(12, 3)


# -- initialisation from an image ViT -------------------------------------------------------------------------------
def _image_vit(**overrides):
    torch.manual_seed(5)
    vit = create_model("vit_tiny_test", num_classes=5, **overrides).eval()  # patch 8, dim 32, depth 2, heads 2
    _perturb(vit, seed=6, scale=0.05)
    return vit


def _static(frames: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return image, image[:, :, None].expand(2, 3, frames, 32, 32).contiguous()  # (B, 3, T, H, W): the image T times


@pytest.mark.parametrize("tubelet_init", ["central", "inflate"])
def test_inflated_from_an_image_vit_equals_it_on_a_static_clip(tubelet_init):
    """ViViT's initialisation (tubelet filters at the central frame or inflated, position table repeated over time,
    blocks copied): on a clip that repeats one image, ViViT model 1 (one 2-frame tubelet in time) and TimeSformer
    (4 frames; temporal_fc starts at zero) give the image ViT's logits (the same head copied)."""
    vit = _image_vit()
    image, clip = _static(4)
    with torch.no_grad():
        expected = vit(image)
    for name, frames in (("vivit_spatiotemporal_test", 2), ("timesformer_test", 4)):
        model = _build(name, num_frames=frames).eval()
        left = model.load_image_vit(vit.state_dict(), tubelet_init)
        assert {"head.weight", "head.bias"} <= set(left)  # only the head and the temporal attention stay as built
        assert all(k.startswith("head.") or ".attn_time." in k or ".norm_time." in k for k in left), left
        model.head.load_state_dict(vit.head.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(model(clip[:, :, :frames]), expected, rtol=1e-5, atol=1e-5)
    model = _build("vivit_spatiotemporal_test").eval()  # 2 tubelets in time: the table is repeated
    model.load_image_vit(vit.state_dict(), tubelet_init)
    table = model.pos_embed.grid.weight  # (1, T', H', W', C)
    assert torch.equal(table[:, 0], vit.pos_embed.weight[0:1]) and torch.equal(table[:, 1], table[:, 0])
    w = model.patch_embed.proj.weight  # (C, 3, 2, 8, 8)
    if tubelet_init == "central":  # t // 2 = 1 holds the image filter, frame 0 is zero
        assert torch.equal(w[:, :, 1], vit.patch_embed.proj.weight) and not w[:, :, 0].any()
    else:
        torch.testing.assert_close(w[:, :, 0], vit.patch_embed.proj.weight / 2)
        assert torch.equal(w[:, :, 0], w[:, :, 1])


@pytest.mark.parametrize("name", ["vivit_factorised_self_attention_test", "vivit_factorised_encoder_test"])
def test_inflated_factorised_blocks_run_the_image_blocks_per_frame(name):
    """Model 3 (attn_time.proj starts at zero) and model 2's spatial transformer, inflated from an image ViT without a
    class token, give each frame of a static clip the image ViT's token maps."""
    vit = _image_vit(class_token=False, global_pool="avg")
    image, clip = _static(4)
    model = _build(name).eval()
    model.load_image_vit(vit.state_dict(), "inflate")
    with torch.no_grad():
        expected = vit.forward_intermediates(image)  # per stage (B, C, H', W')
        got = model.forward_intermediates(clip)[: len(expected)]  # (B, C, T', H', W')
    for e, g in zip(expected, got, strict=True):
        for t in range(g.shape[2]):
            torch.testing.assert_close(g[:, :, t], e, rtol=1e-5, atol=1e-5)


def test_image_vit_mismatch_is_named():
    model = _build("vivit_spatiotemporal_test")
    with pytest.raises(ValueError, match=r"image ViT has 2 blocks, the video model 3 spatial blocks"):
        _build("vivit_spatiotemporal_test", depth=3).load_image_vit(create_model("vit_tiny_test").state_dict())
    with pytest.raises(ValueError, match=r"expected patch_embed.proj.weight \(32, 3, 8, 8\).*got \(32, 3, 16, 16\)"):
        model.load_image_vit(create_model("vit_tiny_test", patch=16).state_dict())
    with pytest.raises(ValueError, match="tubelet_init must be one of"):
        model.load_image_vit(create_model("vit_tiny_test").state_dict(), "middle")


# -- padding, the contract on clips, bad input --------------------------------------------------------------------
@pytest.mark.parametrize("fill", ["junk", "nan"])
@pytest.mark.parametrize("name", VIVIT)
def test_clip_padded_in_time_and_space_equals_the_clip_alone(name, fill):
    """A 2-frame 16×24 clip padded to 4×32×32 (with junk or NaN) gives, at its own tokens, the features it gives
    alone: masked keys, position tables fitted to the content, masked frame means."""
    model = _build(name).eval()
    _perturb(model, seed=2, scale=0.05)
    t = model.frame_multiple
    clip = _clips(1, 2 * t, 16, 24, seed=3)
    x = torch.full((1, 3, 4 * t, 32, 32), float("nan")) if fill == "nan" else _clips(1, 4 * t, 32, 32, seed=4) * 3
    x[:, :, : 2 * t, :16, :24] = clip
    mask = torch.ones(1, 4 * t, 32, 32, dtype=torch.bool)
    mask[:, : 2 * t, :16, :24] = False
    calls, padded = _calls(model, x, mask)
    assert calls and all(c.key_padding_mask is not None and c.key_padding_mask.any() for c in calls)
    with torch.no_grad():
        alone = model.forward_features(clip)  # (1, P + N, C)
    P = model.num_prefix_tokens
    if name == "vivit_factorised_encoder_test":  # frame tokens: the 2 content frames of 4
        torch.testing.assert_close(padded[:, :2], alone, rtol=1e-5, atol=1e-5)
        return
    grid = padded[:, P:].reshape(1, 4, 4, 4, -1)[:, :2, :2, :3]  # the content tubelets
    torch.testing.assert_close(grid.reshape(1, -1, grid.shape[-1]), alone[:, P:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded[:, :P], alone[:, :P], rtol=1e-5, atol=1e-5)


def test_video_swin_mask_reaches_every_window_call():
    model = _build("video_swin_test").eval()
    x, mask = _clips(2, 4, 64, 64), torch.zeros(2, 4, 64, 64, dtype=torch.bool)
    mask[0, 2:] = True
    mask[0, :, 40:] = True
    calls, _ = _calls(model, x, mask)
    assert len(calls) == 4 and all(isinstance(c.pattern, Window) and c.key_padding_mask is not None for c in calls)
    assert calls[1].pattern == Window((2, 4, 4), (0, 2, 2))  # 2 tubelets in time: the window is the whole axis
    for c in calls:
        assert c.key_padding_mask[0].any() and not c.key_padding_mask[1].any()


@pytest.mark.parametrize("name", VIDEO)
def test_video_contract_on_other_clip_lengths_and_sizes(name):
    """Built for 4 frames of 32²; clips of more frames and larger, non-square frames run, maps follow the grid;
    gradient checkpointing changes nothing; eval is deterministic."""
    model = _build(name)
    t, p = model.frame_multiple, model.input_multiple
    x = _clips(1, 4 + 2 * t, 32 + p, 32 + 2 * p, seed=5)
    out = model.eval()(x)
    assert out.shape == (1, 5) and torch.isfinite(out).all()
    assert torch.equal(out, model(x))
    for fmap, info in zip(model.forward_intermediates(x), model.feature_info, strict=True):
        assert fmap.shape[:3] == (1, info.num_chs, (4 + 2 * t) // t)
        assert fmap.shape[-2:] == (-(-(32 + p) // info.reduction), -(-(32 + 2 * p) // info.reduction))
    model.train()
    results = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad(set_to_none=True)
        (model(x) * torch.arange(5.0)).sum().backward()
        results.append({n: q.grad.clone() for n, q in model.named_parameters()})
    for n in results[0]:
        torch.testing.assert_close(results[1][n], results[0][n], rtol=1e-4, atol=1e-6, msg=n)


def test_bad_clips_are_named():
    model = _build("vivit_spatiotemporal_test")
    with pytest.raises(ValueError, match=r"expects videos \(B, 3, T, H, W\), got torch.float32 \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"channels before time"):
        model(torch.randn(2, 4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"clip T×H×W = 3×32×32 must be a multiple of the tubelet 2×8×8.*3 % 2 = 1"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match=r"variant 'factorised_dot_product' has no class token"):
        create_model("vivit_factorised_dot_product_test", class_token=True)
    with pytest.raises(ValueError, match=r"num_frames 5 is not a multiple of the tubelet's 2 frames"):
        create_model("vivit_spatiotemporal_test", num_frames=5)
    with pytest.raises(ValueError, match=r"variant must be one of"):
        create_model("vivit_spatiotemporal_test", variant="joint")


# -- cost model ---------------------------------------------------------------------------------------------------
# ViViT paper (Arnab et al. 2021), Table 2: ViViT-B, 32 frames of 224², tubelet 2×16×16; "GFLOPs" = GMACs
PAPER_GMACS = {"spatiotemporal": 455.2, "factorised_encoder": 284.4, "factorised_self_attention": 372.3,
               "factorised_dot_product": 277.1}


def test_vivit_b_gmacs_match_the_paper_table():
    """Counted on the meta device (nothing computed): each variant within 1.5 % of the paper's GFLOPs, and the
    ratios to model 1 within 0.01 (the residual: we do not count the class token of model 2's frames)."""
    ours = {}
    for variant in PAPER_GMACS:
        with torch.device("meta"):
            model = create_model(f"vivit_b16x2_{variant}")
        ours[variant] = count_flops(model, 224)["macs"] / 1e9
    for variant, paper in PAPER_GMACS.items():
        assert ours[variant] == pytest.approx(paper, rel=0.015), (variant, ours[variant])
        ratio, paper_ratio = ours[variant] / ours["spatiotemporal"], paper / PAPER_GMACS["spatiotemporal"]
        assert abs(ratio - paper_ratio) < 0.01, (variant, ratio, paper_ratio)
