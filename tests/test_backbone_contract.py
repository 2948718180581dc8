"""The backbone contract beyond images: a family declares its ``input_kind`` ("image", "video" or "tokens") and the
input check says expected vs got; tiny video and text backbones defined here (no such family exists yet) run
through the shared ``forward_features`` / ``forward_intermediates`` with padding masks reaching the operator.
Also: every preset declares its FSDP wrap units (``fsdp_units``), the blocks ``train/distributed.py`` wrapped by
type before, plus CoAtNet's downsampling Transformer blocks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from visionattn.layers import BottleneckBlock, NonLocalBlock, TransformerBlock
from visionattn.layers.mbconv import MBConv
from visionattn.layers.padding import downsample_mask
from visionattn.models import Backbone, FeatureInfo, create_model, list_models
from visionattn.models.inputs import INPUT_KINDS, check_input
from visionattn.ops import BACKENDS, Global, intercept_attention


class TinyVideo(Backbone):
    """Videos ``(B, 3, T, H, W)`` → tubelets ``(B, T/2, H/4, W/4, 16)`` (a non-overlapping 2×4×4 Conv3d) → one
    Transformer block with Global attention over the 3D grid; maps ``(B, 16, T/2, H/4, W/4)``."""

    input_kind = "video"

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv3d(3, 16, kernel_size=(2, 4, 4), stride=(2, 4, 4))
        self.stages = nn.ModuleList([TransformerBlock(16, 2, Global(), dims=3)])
        self.feature_info = [FeatureInfo(16, 4, "stages.0")]
        self.num_classes = 3
        self.head = nn.Linear(16, 3)

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.embed(x).permute(0, 2, 3, 4, 1)  # (B, T/2, H/4, W/4, 16)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        return [downsample_mask(padding_mask, (2, 4, 4))]  # (B, T/2, H/4, W/4)

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state.permute(0, 4, 1, 2, 3)  # (B, 16, T/2, H/4, W/4)

    def forward_norm(self, state: Tensor) -> Tensor:
        return state

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        x = features.mean(dim=(1, 2, 3))  # (B, 16)
        return x if pre_logits else self.head(x)


class TinyText(Backbone):
    """Token ids ``(B, N)`` → embeddings + learned absolute positions ``(B, N, 16)`` → one Transformer block with
    Global attention; the padding mask ``(B, N)`` is the key padding mask."""

    input_kind = "tokens"

    def __init__(self, vocab: int = 50, max_len: int = 32):
        super().__init__()
        self.tokens = nn.Embedding(vocab, 16)
        self.positions = nn.Embedding(max_len, 16)
        self.stages = nn.ModuleList([TransformerBlock(16, 2, Global(), dims=1)])
        self.feature_info = [FeatureInfo(16, 1, "stages.0")]
        self.num_classes = 0

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.tokens(x) + self.positions.weight[: x.shape[1]]  # (B, N, 16)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        return [padding_mask]

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state.transpose(1, 2)  # (B, 16, N)

    def forward_norm(self, state: Tensor) -> Tensor:
        return state

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        return features[:, 0]


def _recorded_masks(model, *args, **kwargs) -> tuple[list, Tensor]:
    masks = []

    def handler(call):
        masks.append(call.key_padding_mask)
        return BACKENDS["reference"].run(call)

    with torch.no_grad(), intercept_attention(handler):
        out = model.forward_features(*args, **kwargs)
    return masks, out


# -- input kinds ----------------------------------------------------------------------------------------------
def test_video_backbone_runs_and_checks_its_input():
    torch.manual_seed(0)
    model = TinyVideo().eval()
    x = torch.randn(2, 3, 4, 16, 24)  # (B, C, T, H, W)
    assert model(x).shape == (2, 3)
    (fmap,) = model.forward_intermediates(x)
    assert fmap.shape == (2, 16, 2, 4, 6)
    with pytest.raises(ValueError, match=r"TinyVideo expects videos \(B, 3, T, H, W\), got torch.float32 \(2, 3, 16, "
                                         r"24\)"):
        model(torch.randn(2, 3, 16, 24))
    with pytest.raises(ValueError, match=r"channels before time"):
        model(torch.randn(2, 4, 3, 16, 24))  # (B, T, C, H, W): a common mix-up
    with pytest.raises(ValueError, match=r"padding_mask must be bool \(B, T, H, W\) = \(2, 4, 16, 24\)"):
        model.forward_features(x, padding_mask=torch.zeros(2, 16, 24, dtype=torch.bool))


def test_video_padded_in_time_and_space_equals_the_clip_alone():
    """Global attention over non-overlapping tubelets: a clip padded with junk frames and pixels gives, at its own
    tubelets, the features it gives alone."""
    torch.manual_seed(0)
    model = TinyVideo().eval()
    clip = torch.randn(1, 3, 2, 8, 12)
    x = torch.randn(1, 3, 6, 16, 24) * 4  # junk
    x[:, :, :2, :8, :12] = clip
    mask = torch.ones(1, 6, 16, 24, dtype=torch.bool)
    mask[:, :2, :8, :12] = False
    masks, padded = _recorded_masks(model, x, padding_mask=mask)
    assert len(masks) == 1 and masks[0].shape == (1, 3, 4, 6) and masks[0].sum() == 3 * 4 * 6 - 1 * 2 * 3
    with torch.no_grad():
        alone = model.forward_features(clip)  # (1, 1, 2, 3, 16)
    torch.testing.assert_close(padded[:, :1, :2, :3], alone, rtol=1e-5, atol=1e-5)


def test_text_backbone_runs_and_checks_its_input():
    torch.manual_seed(0)
    model = TinyText().eval()
    ids = torch.randint(0, 50, (2, 7))
    assert model(ids).shape == (2, 16)
    assert model.forward_intermediates(ids)[0].shape == (2, 16, 7)
    with pytest.raises(ValueError, match=r"TinyText expects token sequences \(B, N\) integer token ids, got "
                                         r"torch.float32 \(2, 7, 16\)"):
        model(torch.randn(2, 7, 16))
    with pytest.raises(ValueError, match=r"got torch.bool"):
        model(ids > 3)
    with pytest.raises(TypeError, match=r"expects token sequences.*got list"):
        model([[1, 2, 3]])


def test_text_padding_mask_reaches_the_operator_and_equals_the_sentence_alone():
    torch.manual_seed(0)
    model = TinyText().eval()
    short = torch.tensor([[5, 9, 2]])
    batch = torch.tensor([[5, 9, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[False] * 3 + [True] * 3, [False] * 6])
    masks, feats = _recorded_masks(model, batch, padding_mask=mask)
    assert len(masks) == 1 and torch.equal(masks[0], mask)
    with torch.no_grad():
        alone = model.forward_features(short)
    torch.testing.assert_close(feats[:1, :3], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"padding_mask must be bool \(B, N\) = \(2, 6\)"):
        model.forward_features(batch, padding_mask=mask[:, :5])


def test_image_backbones_keep_their_message_and_the_kinds_are_known():
    model = create_model("vit_tiny_test")
    with pytest.raises(ValueError, match=r"VisionTransformer expects images \(B, 3, H, W\), got torch.float32 "
                                         r"\(1, 1, 32, 32\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expects images .*got torch.int64"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.long))
    assert INPUT_KINDS == ("image", "video", "tokens")
    with pytest.raises(ValueError, match=r"input_kind must be one of \('image', 'video', 'tokens'\), got 'audio'"):
        check_input("audio", torch.zeros(1, 3), 3, "Toy")


# -- FSDP units -----------------------------------------------------------------------------------------------
OLD_BLOCK_TYPES = (TransformerBlock, BottleneckBlock, MBConv, NonLocalBlock)  # distributed.default_block_types()


def _outermost(model: nn.Module, types: tuple) -> list[nn.Module]:
    found, inside = [], set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, types):
            found.append(module)
            inside.update(id(m) for m in module.modules())
    return found


@pytest.mark.parametrize("name", list_models("*_test"))
def test_fsdp_units_are_the_repeated_blocks(name):
    model = create_model(name, num_classes=0)
    units = model.fsdp_units()
    assert units and all(isinstance(u, nn.Module) for u in units)
    ids = [id(u) for u in units]
    assert len(set(ids)) == len(ids), f"{name}: a unit is listed twice"
    for u in units:  # no unit contains another: each parameter is sharded by one unit at most
        nested = [v for v in units if v is not u and any(v is m for m in u.modules())]
        assert not nested, f"{name}: {type(u).__name__} contains another unit"
    old = _outermost(model, OLD_BLOCK_TYPES)
    assert {id(m) for m in old} <= set(ids), f"{name}: a block wrapped by type before is not a unit"
    extra = [type(u).__name__ for u in units if id(u) not in {id(m) for m in old}]
    assert set(extra) <= {"DownsampleTransformerBlock"}, f"{name}: unexpected units {extra}"
    in_units = sum(p.numel() for u in units for p in u.parameters())
    assert in_units > 0.5 * sum(p.numel() for p in model.parameters())  # the blocks hold most weights


def test_fsdp_units_of_custom_backbones():
    video, text = TinyVideo(), TinyText()
    assert video.fsdp_units() == [video.stages[0]] and text.fsdp_units() == [text.stages[0]]
