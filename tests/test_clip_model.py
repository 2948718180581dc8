"""CLIP's towers and loss against their trusted twins, at random init and without downloads:

* open_clip's ``CLIP`` (a small ViT config here; ViT-B-32's architecture in the slow tier): weights converted into
  ours give the same image and text embeddings (relative error ≤ 1e-5) and the same logit scale; open_clip's
  tokenizer gives the same ids; OpenAI-format files (QuickGELU, size entries, TorchScript) load through the converter;
* the text tower: padding after the end token changes nothing; bad token input says what it expected;
* the ViT's new ``pre_norm`` / ``act`` options equal timm's CLIP-style ViT;
* the loss equals the written-out formula and open_clip's ``ClipLoss``, forward and backward; two gloo processes with
  DDP (negatives gathered from both) give the gradients of one process holding the global batch.
"""

from __future__ import annotations

import os
import socket
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

open_clip = pytest.importorskip("open_clip")

from visionattn.models import create_model, get_preset, list_models  # noqa: E402
from visionattn.models.families.clip_text import TextSpec, TextTransformer  # noqa: E402
from visionattn.tasks.clip.loss import clip_loss, clip_loss_reference  # noqa: E402
from visionattn.tasks.clip.model import (  # noqa: E402
    CLIPModel,
    build_open_clip_vit,
    convert_open_clip_state_dict,
    load_clip_checkpoint,
    open_clip_architecture,
)
from visionattn.tasks.clip.tokenizer import get_tokenizer  # noqa: E402

SMALL = dict(embed_dim=48, vision_cfg=dict(image_size=32, layers=2, width=128, patch_size=8),
             text_cfg=dict(context_length=20, vocab_size=49408, width=128, heads=2, layers=2))
TEXTS = ["Puffin. A sea bird. Keywords: bird, animal", "a drawing of a red car", "x", "two dead frogs " * 9]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _ours_from(oc_model, act: str = "gelu") -> CLIPModel:
    """Our CLIPModel with the architecture read from open_clip's state dict, filled by the converter."""
    state = oc_model.state_dict()
    arch = open_clip_architecture(state)
    v = arch["vision"]
    model = CLIPModel(build_open_clip_vit(v["width"], v["layers"], v["patch"], v["image_size"],
                                          mlp_ratio=v["mlp_ratio"], act=act),
                      TextTransformer(TextSpec(**arch["text"], act=act), num_classes=arch["embed_dim"]))
    model.load_state_dict(convert_open_clip_state_dict(state, model))  # strict: every key matched
    return model.eval()


def _compare_embeddings(oc, ours, size: int, context: int) -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, size, size, generator=g)
    ids = open_clip.get_tokenizer("ViT-B-32")(TEXTS, context_length=context)
    with torch.no_grad():
        want_i, want_t = oc.encode_image(images), oc.encode_text(ids)
        got_i, got_t = ours.encode_image(images, normalize=False), ours.encode_text(ids, normalize=False)
        short = ours.encode_text(ids[:, : int((ids != 0).sum(1).max())], normalize=False)  # padded to the longest
        scale = ours(images=images).logit_scale
    assert _rel(got_i, want_i) <= 1e-5 and _rel(got_t, want_t) <= 1e-5, (_rel(got_i, want_i), _rel(got_t, want_t))
    assert _rel(short, want_t) <= 1e-5
    torch.testing.assert_close(scale, oc.logit_scale.exp())


@pytest.mark.parametrize("quick_gelu", [False, True], ids=["gelu", "quick_gelu"])
def test_small_clip_equals_open_clip(quick_gelu):
    from open_clip.model import CLIP

    torch.manual_seed(0)
    oc = CLIP(**SMALL, quick_gelu=quick_gelu).eval()
    ours = _ours_from(oc, act="quick_gelu" if quick_gelu else "gelu")
    _compare_embeddings(oc, ours, 32, 20)
    assert open_clip_architecture(oc.state_dict())["text"]["heads"] == 2  # width // 64, open_clip's rule


@pytest.mark.slow
def test_vit_b32_architecture_equals_open_clip():
    torch.manual_seed(0)
    oc = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    ours = _ours_from(oc)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in oc.parameters()) + 768  # patch bias
    _compare_embeddings(oc, ours, 224, 77)
    text = create_model("clip_text_base", num_classes=512)  # the registered preset is ViT-B-32's text tower
    assert sum(p.numel() for p in text.parameters()) == sum(p.numel() for p in ours.text.parameters())


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:FutureWarning")
def test_checkpoint_files_load(tmp_path):
    """open_clip state dicts (.pt, .safetensors) and OpenAI-format files: a state dict with OpenAI's size entries
    (QuickGELU inferred) and a TorchScript archive."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    oc = CLIP(**SMALL).eval()
    torch.save({"state_dict": oc.state_dict()}, tmp_path / "open_clip.pt")
    save_file(oc.state_dict(), str(tmp_path / "open_clip.safetensors"))
    for name in ("open_clip.pt", "open_clip.safetensors"):
        _compare_embeddings(oc, load_clip_checkpoint(tmp_path / name), 32, 20)
    quick = CLIP(**SMALL, quick_gelu=True).eval()
    openai = {**quick.state_dict(), "input_resolution": torch.tensor(32), "context_length": torch.tensor(20),
              "vocab_size": torch.tensor(49408)}
    torch.save(openai, tmp_path / "openai.pt")
    loaded = load_clip_checkpoint(tmp_path / "openai.pt")
    assert loaded.text.spec.act == "quick_gelu"
    _compare_embeddings(quick, loaded, 32, 20)
    torch.jit.save(torch.jit.script(quick), str(tmp_path / "openai_jit.pt"))
    _compare_embeddings(quick, load_clip_checkpoint(tmp_path / "openai_jit.pt"), 32, 20)
    with pytest.raises(ValueError, match=r"not an open_clip / OpenAI ViT CLIP state dict: missing \['visual.conv1"):
        torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
        load_clip_checkpoint(tmp_path / "other.pt")


def test_tokenizer_equals_open_clip():
    texts = [*TEXTS, "Ünïcode &amp; HTML   spaces", "a " * 200]
    ours, theirs = get_tokenizer(77)(texts), open_clip.get_tokenizer("ViT-B-32")(texts)
    assert torch.equal(ours, theirs[:, : ours.shape[1]]) and not theirs[:, ours.shape[1]:].any()
    ids, cut = get_tokenizer(77).encode("a " * 200)
    assert cut and len(ids) == 77 and ids[-1] == 49407
    assert get_tokenizer(77).encode("x") == ((49406, 343, 49407), False)


# -- the text tower alone ----------------------------------------------------------------------------------------
def _text(**fields) -> TextTransformer:
    torch.manual_seed(0)
    return TextTransformer(TextSpec(vocab_size=100, context_length=12, dim=32, depth=2, heads=2, eot_id=99,
                                    **fields), num_classes=8).eval()


def test_padding_after_the_end_token_changes_nothing():
    model = _text()
    ids = torch.tensor([[98, 5, 6, 7, 99]])
    alone = model(ids)
    junk = torch.cat([ids, torch.randint(0, 99, (1, 7))], dim=1)  # junk after the end token, up to the context
    padded_mask = torch.zeros(1, 12, dtype=torch.bool)
    padded_mask[:, 5:] = True
    torch.testing.assert_close(model(junk), alone, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(junk, padding_mask=padded_mask), alone, rtol=1e-5, atol=1e-6)
    maps = model.forward_intermediates(junk)
    assert [m.shape for m in maps] == [(1, 32, 12)] * 2 and model.feature_info[0].num_chs == 32


def test_text_tower_input_errors():
    model = _text()
    with pytest.raises(ValueError, match=r"sequences \[1\] have no end-of-text token \(id 99\)"):
        model(torch.tensor([[98, 99], [98, 5]]))
    with pytest.raises(ValueError, match="13 tokens per sequence, expected at most context_length 12"):
        model(torch.full((1, 13), 99))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 100\), got \[0, 150\]"):
        model(torch.tensor([[0, 150, 99]]))
    with pytest.raises(ValueError, match=r"expects token sequences \(B, N\) integer token ids, got torch.float32"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="pools at the end-of-text token: pass eot_index"):
        model.forward_head(model.forward_features(torch.tensor([[99]])))
    with pytest.raises(ValueError, match="TextSpec.act must be one of"):
        TextSpec(act="relu")


def test_text_presets_are_listed_by_kind():
    assert not list_models("clip_text*")  # images and videos by default: what every generic consumer can feed
    assert list_models("clip_text*", input_kind="tokens") == ["clip_text_base", "clip_text_test", "clip_text_tiny"]
    assert get_preset("clip_text_tiny").input_kind == "tokens" and get_preset("vit_tiny_test").input_kind == "image"
    assert "clip_text_test" in list_models(input_kind=None) and "vit_tiny_test" in list_models(input_kind="image")
    assert set(list_models()) == set(list_models(input_kind=("image", "video")))
    with pytest.raises(ValueError, match="input_kind expected one of"):
        list_models(input_kind="audio")


def test_vit_pre_norm_and_quick_gelu_equal_timm():
    """``pre_norm`` (CLIP's ``ln_pre``) and ``act='quick_gelu'`` of our ViT equal timm's VisionTransformer with the
    same options (timm's CLIP ViTs have no patch bias: a zero bias here)."""
    from timm.layers import QuickGELU
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    theirs = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=0,
                               pre_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-5), act_layer=QuickGELU).eval()
    ours = create_model("vit_tiny_test", num_classes=0, dim=64, heads=2, depth=2, pre_norm=True, norm_eps=1e-5,
                        act="quick_gelu").eval()
    state = ours.convert_state_dict(theirs.state_dict())
    state["patch_embed.proj.bias"] = torch.zeros(64)
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="VitSpec.act must be one of"):
        create_model("vit_tiny_test", act="swish")


# -- the loss ------------------------------------------------------------------------------------------------------
def _features(b: int, e: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.normalize(torch.randn(b, e, generator=g), dim=-1)
    text = torch.nn.functional.normalize(image + 0.8 * torch.randn(b, e, generator=g), dim=-1)
    return image.requires_grad_(), text.requires_grad_()


def test_loss_equals_the_formula_and_open_clip():
    from open_clip.loss import ClipLoss

    image, text = _features(9, 16, 0)
    scale = torch.tensor(14.3, requires_grad=True)
    ours, correct = clip_loss(image, text, scale)
    grads = torch.autograd.grad(ours, (image, text, scale))
    ref = clip_loss_reference(image, text, scale)
    ref_grads = torch.autograd.grad(ref, (image, text, scale))
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-7)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours, ClipLoss()(image, text, scale), rtol=1e-6, atol=1e-7)
    assert int(correct) == int(((image @ text.t()).argmax(1) == torch.arange(9)).sum())
    with pytest.raises(ValueError, match=r"expected image and text embeddings of one shape \(B, E\)"):
        clip_loss(image, text[:3], scale)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    visual = create_model("vit_tiny_test", num_classes=0, img_size=16, dim=32, depth=1, heads=2)
    return CLIPModel(visual, create_model("clip_text_test", num_classes=16, depth=1))


def _global_batch():
    g = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 16, 16, generator=g)
    ids = torch.randint(1, 1000, (8, 6), generator=g)
    ids[:, -1] = 49407
    return images, ids


def _ddp_worker(rank: int, world: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from visionattn.train.distributed import cleanup, init_distributed, wrap_model

    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        model = _tiny_clip()
        ddp = wrap_model(model, info)
        images, ids = _global_batch()
        mine = slice(4 * rank, 4 * rank + 4)
        outputs = ddp(images=images[mine], tokens=ids[mine])
        loss, _ = clip_loss(outputs.image, outputs.text, outputs.logit_scale, info)
        loss.backward()
        if info.is_main:
            torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, Path(out) / "ddp_grads.pt")
    finally:
        cleanup(info)


def test_two_ddp_processes_give_the_global_batch_gradients(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp_grads.pt", weights_only=True)
    model = _tiny_clip()
    images, ids = _global_batch()
    outputs = model(images=images, tokens=ids)
    loss, _ = clip_loss(outputs.image, outputs.text, outputs.logit_scale)
    loss.backward()
    for name, p in model.named_parameters():
        scale = float(p.grad.abs().max())  # per tensor: float summation order differs between the two runs
        torch.testing.assert_close(ddp[name] / scale, p.grad / scale, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")
    # without the gather each rank would see only its own 4 negatives: a different gradient, far beyond the tolerance
    local = _tiny_clip()
    out = local(images=images[:4], tokens=ids[:4])
    clip_loss(out.image, out.text, out.logit_scale)[0].backward()
    assert (local.logit_scale.grad - model.logit_scale.grad).abs() > 1e-3


def test_logit_scale_starts_at_1_over_0_07_and_is_clamped_at_100():
    import math

    model = _tiny_clip()
    assert float(model.scale().detach()) == pytest.approx(1 / 0.07)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500.0))
    assert float(model.scale().detach()) == pytest.approx(100.0)  # the forward clamps
    from visionattn.tasks.clip import ClipTask

    ClipTask().after_update(model, None)  # the task clamps the parameter after every update (open_clip's habit)
    assert float(model.logit_scale.detach()) == pytest.approx(math.log(100.0))
    with pytest.raises(ValueError, match="expected 0 < logit_scale_init <= max_logit_scale"):
        CLIPModel(create_model("vit_tiny_test", num_classes=0), create_model("clip_text_test"), 200.0, 100.0)
    with pytest.raises(ValueError, match="build it with num_classes=0"):
        CLIPModel(create_model("vit_tiny_test", num_classes=3), create_model("clip_text_test"))
