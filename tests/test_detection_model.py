"""DETR's model: equal to Hugging Face ``transformers``' DETR with converted weights (detection logits and boxes, and
panoptic masks; random init, timm ResNet backbone, no download), the official-checkpoint converter agrees with the
HF one, the sine positions equal HF's, padding (NaN-filled) never leaks into an image's outputs, and any backbone
family (ResNet, Swin, ViT) works with every trainable parameter reached."""

from __future__ import annotations

import re

import pytest
import torch

from visionattn.tasks.detection.model import DetrSpec, build_detr, convert_detr_state_dict, load_detr_weights
from visionattn.tasks.detection.position import sine_position_embedding

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_models():
    """One random-init HF DETR per head, shared by the tests of this module (building one takes seconds)."""
    return {seg: _hf("resnet26", seg) for seg in (False, True)}


def _hf(backbone: str, segmentation: bool, **kw):
    from transformers import DetrConfig, DetrForObjectDetection, DetrForSegmentation

    cfg = DetrConfig(use_timm_backbone=True, use_pretrained_backbone=False, backbone=backbone, num_labels=5,
                     encoder_layers=2, decoder_layers=2, num_queries=7, d_model=64, encoder_ffn_dim=96,
                     decoder_ffn_dim=96, encoder_attention_heads=8, decoder_attention_heads=8, **kw)
    torch.manual_seed(0)
    model = (DetrForSegmentation if segmentation else DetrForObjectDetection)(cfg).eval()
    with torch.no_grad():  # random batch-norm statistics and biases: eval-mode BN must not be the identity
        g = torch.Generator().manual_seed(1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(".bias") and not p.abs().sum():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _ours(backbone: str, segmentation: bool):
    spec = DetrSpec(num_classes=5, num_queries=7, hidden_dim=64, heads=8, enc_layers=2, dec_layers=2, ffn_dim=96,
                    dropout=0.1, masks=segmentation)
    return build_detr(backbone, spec).eval()


def _batch():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 128, 160, generator=g)
    mask = torch.zeros(2, 128, 160, dtype=torch.bool)
    mask[1, 96:] = True  # the second image is 96 x 128 inside the padded batch
    mask[1, :, 128:] = True
    x[1, :, mask[1]] = 0.0
    return x, mask


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("segmentation", [False, True], ids=["detection", "panoptic"])
def test_equal_to_huggingface_detr_with_converted_weights(segmentation, hf_models):
    hf = hf_models[segmentation]
    ours = _ours("resnet26", segmentation)
    assert load_detr_weights(ours, hf.state_dict()) == []
    x, mask = _batch()
    with torch.no_grad():
        theirs = hf(x, pixel_mask=(~mask).long())
        mine = ours(x, mask)
    assert _rel(mine.logits, theirs.logits) <= 1e-4
    assert _rel(mine.boxes, theirs.pred_boxes) <= 1e-4
    if segmentation:
        assert mine.masks.shape == theirs.pred_masks.shape == (2, 7, 32, 40)
        assert _rel(mine.masks, theirs.pred_masks) <= 1e-4
    # not vacuous: another seed's weights give other outputs
    other = _ours("resnet26", segmentation)
    with torch.no_grad():
        assert _rel(other(x, mask).logits, theirs.logits) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("segmentation", [False, True], ids=["detection", "panoptic"])
def test_equal_to_huggingface_detr_resnet50(segmentation):
    hf = _hf("resnet50", segmentation)
    ours = _ours("resnet50", segmentation)
    load_detr_weights(ours, hf.state_dict())
    x, mask = _batch()
    with torch.no_grad():
        theirs, mine = hf(x, pixel_mask=(~mask).long()), ours(x, mask)
    assert _rel(mine.logits, theirs.logits) <= 1e-4 and _rel(mine.boxes, theirs.pred_boxes) <= 1e-4
    if segmentation:
        assert _rel(mine.masks, theirs.pred_masks) <= 1e-4


def _official_from_hf(state: dict) -> dict:
    """The official DETR layout of an HF state dict, written from the official repository's module names
    (nn.MultiheadAttention's fused in_proj, linear1/2, norm1-3, lay/gn/adapter/out_lay)."""
    out = {}
    seg = any(k.startswith("detr.") for k in state)
    for key, value in state.items():
        k = re.sub(r"^(detr\.)?model\.", "", key)
        k = re.sub(r"^detr\.", "", k)
        m = re.match(r"(encoder|decoder)\.layers\.(\d+)\.(self_attn|encoder_attn)\.([qkv])_proj\.(weight|bias)$", k)
        if m:
            part, i, attn, which, kind = m.groups()
            name = "self_attn" if attn == "self_attn" else "multihead_attn"
            out.setdefault(f"transformer.{part}.layers.{i}.{name}.in_proj_{kind}", {})[which] = value
            continue
        rules = [(r"^backbone\.model\.", "backbone.0.body."), (r"^input_projection\.", "input_proj."),
                 (r"^query_position_embeddings\.", "query_embed."),
                 (r"^(encoder|decoder)\.layers\.(\d+)\.self_attn\.o_proj\.",
                  r"transformer.\1.layers.\2.self_attn.out_proj."),
                 (r"^decoder\.layers\.(\d+)\.encoder_attn\.o_proj\.",
                  r"transformer.decoder.layers.\1.multihead_attn.out_proj."),
                 (r"^(encoder|decoder)\.layers\.(\d+)\.mlp\.fc1\.", r"transformer.\1.layers.\2.linear1."),
                 (r"^(encoder|decoder)\.layers\.(\d+)\.mlp\.fc2\.", r"transformer.\1.layers.\2.linear2."),
                 (r"^(encoder|decoder)\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.\1.layers.\2.norm1."),
                 (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.encoder.layers.\1.norm2."),
                 (r"^decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm2."),
                 (r"^decoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.decoder.layers.\1.norm3."),
                 (r"^decoder\.layernorm\.", "transformer.decoder.norm."),
                 (r"^class_labels_classifier\.", "class_embed."), (r"^bbox_predictor\.", "bbox_embed."),
                 (r"^bbox_attention\.q_proj\.", "bbox_attention.q_linear."),
                 (r"^bbox_attention\.k_proj\.", "bbox_attention.k_linear."),
                 (r"^mask_head\.conv1\.conv\.", "mask_head.lay1."), (r"^mask_head\.conv1\.norm\.", "mask_head.gn1."),
                 (r"^mask_head\.conv2\.conv\.", "mask_head.lay2."), (r"^mask_head\.conv2\.norm\.", "mask_head.gn2."),
                 (r"^mask_head\.output_conv\.", "mask_head.out_lay.")]
        for j in range(3):
            rules += [(rf"^mask_head\.fpn_stages\.{j}\.fpn_adapter\.", f"mask_head.adapter{j + 1}."),
                      (rf"^mask_head\.fpn_stages\.{j}\.refine\.conv\.", f"mask_head.lay{j + 3}."),
                      (rf"^mask_head\.fpn_stages\.{j}\.refine\.norm\.", f"mask_head.gn{j + 3}.")]
        for pattern, repl in rules:
            k, n = re.subn(pattern, repl, k)
            if n:
                break
        else:
            raise AssertionError(f"no official name for {key}")
        head = not k.startswith(("bbox_attention.", "mask_head."))
        out[("detr." if seg and head else "") + k] = value
    return {k: torch.cat([v["q"], v["k"], v["v"]]) if isinstance(v, dict) else v for k, v in out.items()}


@pytest.mark.parametrize("segmentation", [False, True], ids=["detection", "panoptic"])
def test_official_checkpoint_converts_like_the_huggingface_one(segmentation, tmp_path, hf_models):
    hf = hf_models[segmentation]
    a, b = _ours("resnet26", segmentation), _ours("resnet26", segmentation)
    load_detr_weights(a, hf.state_dict())
    torch.save({"model": _official_from_hf(hf.state_dict())}, tmp_path / "detr.pth")  # official checkpoints wrap
    load_detr_weights(b, tmp_path / "detr.pth")
    sa, sb = a.state_dict(), b.state_dict()
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []


def test_converter_names_what_does_not_fit(hf_models):
    hf = hf_models[False]
    state = dict(hf.state_dict())
    with pytest.raises(ValueError, match=r"not a DETR state dict"):
        convert_detr_state_dict({"fc.weight": torch.zeros(1)})
    state["model.encoder.layers.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"1 hf keys have no counterpart.*extra\.weight"):
        convert_detr_state_dict(state)
    del state["model.encoder.layers.0.extra.weight"]
    del state["model.decoder.layers.1.encoder_attn.v_proj.weight"]
    with pytest.raises(ValueError, match=r"cross_attn\.kv\.weight needs the \['k', 'v'\] projections, found \['k'\]"):
        convert_detr_state_dict(state)
    wide = _ours("resnet26", False)
    state = dict(hf.state_dict())
    state["class_labels_classifier.weight"] = torch.zeros(9, 64)
    with pytest.raises(ValueError, match=r"shape mismatches \['class_embed\.weight: ours \(6, 64\), file \(9, 64\)'"):
        load_detr_weights(wide, state)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_detr_weights(wide, "/nowhere.pth")


def test_sine_positions_equal_huggingface():
    from transformers.models.detr.modeling_detr import DetrSinePositionEmbedding

    mask = torch.zeros(3, 5, 7, dtype=torch.bool)
    mask[1, 3:] = True
    mask[2, :, 4:] = True
    theirs = DetrSinePositionEmbedding(16, normalize=True)((3, 32, 5, 7), "cpu", torch.float32, mask=(~mask).long())
    mine = sine_position_embedding(mask, 32)
    torch.testing.assert_close(mine, theirs.permute(0, 2, 3, 1), rtol=1e-6, atol=1e-6)
    # content positions do not depend on the padding: the padded 3 x 7 image's encoding is its own
    alone = sine_position_embedding(torch.zeros(1, 3, 7, dtype=torch.bool), 32)
    torch.testing.assert_close(mine[1, :3], alone[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_position_embedding(mask, 30)


def test_nan_padding_never_reaches_an_images_outputs():
    """ViT backbone (non-overlapping patches, global attention): a padded image's logits, boxes and masks equal the
    image alone, even with NaN in the padding."""
    torch.manual_seed(0)
    spec = DetrSpec(num_classes=3, num_queries=5, hidden_dim=32, heads=4, enc_layers=2, dec_layers=2, ffn_dim=48)
    model = build_detr("vit_tiny_test", spec, {"patch": 8, "dim": 32, "depth": 2, "heads": 2}).eval()
    g = torch.Generator().manual_seed(3)
    image = torch.randn(1, 3, 40, 48, generator=g)
    batch = torch.full((2, 3, 64, 64), float("nan"))
    batch[0] = torch.randn(3, 64, 64, generator=g)
    batch[1, :, :40, :48] = image[0]
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    mask[0] = False
    mask[1, :40, :48] = False
    with torch.no_grad():
        alone, padded = model(image), model(batch, mask)
    assert torch.isfinite(padded.logits).all()
    torch.testing.assert_close(padded.logits[1], alone.logits[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded.boxes[1], alone.boxes[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, overrides", [("resnet_test", {}), ("swin_test", {}),
                                             ("vit_tiny_test", {"patch": 8, "dim": 32, "depth": 2, "heads": 2})])
def test_any_backbone_family_trains_every_parameter(name, overrides):
    torch.manual_seed(0)
    spec = DetrSpec(num_classes=4, num_queries=6, hidden_dim=64, heads=8, enc_layers=1, dec_layers=2, ffn_dim=64,
                    masks=name != "vit_tiny_test")
    model = build_detr(name, spec, overrides)
    x = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    out = model(x, mask)
    assert out.logits.shape == (2, 6, 5) and out.boxes.shape == (2, 6, 4) and len(out.aux) == 1
    assert (out.boxes >= 0).all() and (out.boxes <= 1).all()
    loss = out.logits.sum() + out.boxes.sum() + sum(a.sum() + b.sum() for a, b in out.aux)
    if spec.masks:
        assert out.masks.shape[:2] == (2, 6)
        loss = loss + out.masks.sum()
    loss.backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unreached == []
    if name != "resnet_test":  # the final norm is not on the feature path: frozen, not left dangling
        assert any("norm" in n for n in model.backbone.frozen)


def test_feature_index_drops_later_stages_and_bad_indices_are_named():
    spec = DetrSpec(num_classes=2, num_queries=3, hidden_dim=32, heads=4, enc_layers=1, dec_layers=1, ffn_dim=32,
                    feature_index=-2)
    model = build_detr("resnet_test", spec)
    assert len(model.backbone.body.stages) == 3 and model.backbone.reductions == [16]
    assert model.size_multiple == 16
    with pytest.raises(ValueError, match="feature_index 7 is out of range for resnet_test with 4 stages"):
        build_detr("resnet_test", DetrSpec(num_classes=2, feature_index=7))
    with pytest.raises(ValueError, match="panoptic head needs backbone maps before the transformer's"):
        build_detr("resnet_test", DetrSpec(num_classes=2, masks=True, feature_index=0))
    shallow = build_detr("resnet_test", DetrSpec(num_classes=2, masks=True, feature_index=-2, hidden_dim=64,
                                                 heads=8, enc_layers=1, dec_layers=1, ffn_dim=32, num_queries=3))
    assert len(shallow.mask_head.adapters) == 2  # stride 16 memory: the stride 8 and 4 maps are fused
    assert shallow(torch.randn(1, 3, 64, 64)).masks.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"hidden_dim \+ heads divisible by 8, got 64 \+ 4"):
        build_detr("resnet_test", DetrSpec(num_classes=2, hidden_dim=64, heads=4, masks=True))


def test_backbone_weights_frozen_batch_norm_and_a_fixed_backbone(tmp_path):
    from torchvision.ops import FrozenBatchNorm2d

    from visionattn.models import create_model

    torch.manual_seed(0)
    classifier = create_model("resnet_test", num_classes=10)
    with torch.no_grad():
        classifier.stem.bn.running_mean.uniform_(-1, 1)
    torch.save({"model": classifier.state_dict()}, tmp_path / "cls.pt")  # a classification run's checkpoint layout
    spec = DetrSpec(num_classes=3, num_queries=4, hidden_dim=32, heads=4, enc_layers=1, dec_layers=1, ffn_dim=32,
                    frozen_bn=True, train_backbone=False)
    model = build_detr("resnet_test", spec, pretrained_path=str(tmp_path / "cls.pt"))
    body = model.backbone.body
    assert isinstance(body.stem.bn, FrozenBatchNorm2d)
    assert torch.equal(body.stem.bn.running_mean, classifier.stem.bn.running_mean)  # statistics kept
    assert torch.equal(body.stem.conv.weight, classifier.stem.conv.weight)
    assert not any(p.requires_grad for p in body.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))
    model.train()
    x = torch.randn(2, 3, 64, 64)
    before = body.stem.bn.running_mean.clone()
    model(x).logits.sum().backward()
    assert torch.equal(body.stem.bn.running_mean, before)  # training mode moves no statistic
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="backbone checkpoint .*other.pt"):
        build_detr("resnet_test", spec, pretrained_path=str(tmp_path / "other.pt"))
