"""ResNet-style backbones whose spatial mixers are data: plain ResNet, SASA, HaloNet, BoTNet, Axial-ResNet and
Non-local ResNet are all :class:`ResNet` built from a different :class:`ResNetSpec`. The spec, the class, the
timm checkpoint converter and every preset of the family are here.

"Replace all the spatial mixing convolutions with attention": each preset's ``mixers`` say which 3×3 convs
became which attention pattern. The stem stays convolutional everywhere (SASA's best models, HaloNet, BoTNet and
Axial-DeepLab all keep a conv stem).

Purity, as the tutorial uses it: a body whose *every* spatial mixer is attention is ``'attention'`` (SASA,
HaloNet H0, Axial-ResNet — the papers call them stand-alone/fully attentional even with a conv stem, whose
7×7 conv on raw pixels the tutorial's guideline "reuse vision components" keeps); a body mixing 3×3 convs and
attention is ``'hybrid'`` (BoTNet, HaloNet-26t, Non-local ResNet).

State between stages is NCHW ``(B, C, H, W)``. Stage ``i`` has reduction ``4 · 2^i`` (4, 8, 16, 32) and
``widths[i]`` channels; ``feature_info`` lists them. Any input size runs (grids are ``ceil(H / reduction)``);
relative tables of grid-wide mixers (BoTNet's Global, Axial) are sized for ``img_size`` and interpolated for a
larger input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

from ...layers.bottleneck import CONV3X3, AttentionMixer, BottleneckBlock, BottleneckStage, MixerSpec
from ...layers.drop import drop_path_rates
from ...layers.nonlocal_block import NonLocalBlock
from ...layers.padding import downsample_mask
from ...layers.stems import STEM_KINDS, make_stem
from ...ops.patterns import Global, Halo, Neighborhood
from ..backbone import Backbone, FeatureInfo
from ..registry import Preset, register, register_alias
from ..sizes import ceil_grid, to_pair
from ..taxonomy import Taxonomy

MixerEntry = MixerSpec | tuple[MixerSpec, ...]


@dataclass(frozen=True)
class ResNetSpec:
    """A bottleneck ResNet along the tutorial's axes.

    depths: blocks per stage. widths: block output channels per stage (ResNet-50: 256, 512, 1024, 2048).
    bottleneck_ratio: mid (mixer) width = ``width * ratio`` (0.25 in ResNet).
    mixers: per stage, a :class:`MixerSpec` for every block, or a tuple of them cycled over the stage's
        blocks (``(CONV3X3, attn)`` = conv, attention, conv, ... as timm's ``interleave_blocks``).
    stem: one of ``'resnet'`` (7×7), ``'deep'``, ``'tiered'`` (three 3×3); stem_width: its output channels.
    nonlocal_after: per stage, indices of blocks followed by a :class:`NonLocalBlock` (shorter tuple = none
        in the remaining stages).
    drop_path: stochastic depth, linearly increasing to this rate over all blocks. drop_rate: head dropout.
    zero_init_last: zero-init the last BN gamma of every block. backend: operator backend for attention.
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1024, 2048)
    bottleneck_ratio: float = 0.25
    mixers: tuple[MixerEntry, ...] = (CONV3X3, CONV3X3, CONV3X3, CONV3X3)
    stem: str = "resnet"
    stem_width: int = 64
    nonlocal_after: tuple[tuple[int, ...], ...] = ()
    drop_path: float = 0.0
    drop_rate: float = 0.0
    zero_init_last: bool = True
    backend: str = "auto"

    def __post_init__(self):
        n = len(self.depths)
        if n < 1 or len(self.widths) != n or len(self.mixers) != n:
            raise ValueError(
                f"ResNetSpec needs one depth, width and mixer per stage; got {n} depths, {len(self.widths)} widths, "
                f"{len(self.mixers)} mixers"
            )
        if any(d < 1 for d in self.depths) or any(w < 1 for w in self.widths):
            raise ValueError(f"ResNetSpec depths and widths must be positive, got {self.depths}, {self.widths}")
        if self.stem not in STEM_KINDS:
            raise ValueError(f"ResNetSpec.stem must be one of {STEM_KINDS}, got {self.stem!r}")
        if len(self.nonlocal_after) > n:
            raise ValueError(f"nonlocal_after has {len(self.nonlocal_after)} entries for {n} stages")
        for s, after in enumerate(self.nonlocal_after):
            bad = [i for i in after if not 0 <= i < self.depths[s]]
            if bad:
                raise ValueError(f"nonlocal_after[{s}]: stage {s} has blocks 0..{self.depths[s] - 1}, got {bad}")

    def stage_mixers(self, stage: int) -> list[MixerSpec]:
        """The mixer of each block of ``stage``."""
        entry = self.mixers[stage]
        cycle = (entry,) if isinstance(entry, MixerSpec) else tuple(entry)
        if not cycle or not all(isinstance(m, MixerSpec) for m in cycle):
            raise ValueError(f"ResNetSpec.mixers[{stage}] must be a MixerSpec or a tuple of them, got {entry!r}")
        return [cycle[i % len(cycle)] for i in range(self.depths[stage])]


def build_stages(spec: ResNetSpec, in_chs: int, img_size, stages: int | None = None,
                 rates: list[float] | None = None):
    """Stages ``0..stages-1`` of ``spec`` after a reduction-4 stem of ``in_chs`` channels.

    Returns ``(nn.ModuleList of BottleneckStage, list[FeatureInfo])``. ``img_size`` (int or ``(H, W)``) sizes
    relative tables of grid-wide attention (the grid each block sees at that size; larger inputs interpolate
    them). ``rates``: one drop-path rate per block (default: :func:`drop_path_rates` over these blocks).
    """
    hw = to_pair(img_size)
    count = len(spec.depths) if stages is None else stages
    total = sum(spec.depths[:count])
    rates = drop_path_rates(spec.drop_path, total) if rates is None else rates
    if len(rates) != total:
        raise ValueError(f"build_stages: expected {total} drop-path rates (one per block), got {len(rates)}")
    modules, info, reduction, k = nn.ModuleList(), [], 4, 0
    for s in range(count):
        width, stride = spec.widths[s], 1 if s == 0 else 2
        mid = max(1, int(round(width * spec.bottleneck_ratio)))
        after = set(spec.nonlocal_after[s]) if s < len(spec.nonlocal_after) else set()
        blocks = []
        for i, mixer in enumerate(spec.stage_mixers(s)):
            st = stride if i == 0 else 1
            grid = ceil_grid(hw, reduction)  # this block's input grid (block 0: before its stride)
            blocks.append(BottleneckBlock(in_chs, mid, width, st, mixer, grid_size=grid, drop_path=rates[k],
                                          zero_init_last=spec.zero_init_last, backend=spec.backend,
                                          resize_position=True))
            if i in after:
                blocks.append(NonLocalBlock(width, backend=spec.backend))
            in_chs, k = width, k + 1
            if i == 0:
                reduction *= st
        modules.append(BottleneckStage(*blocks))
        info.append(FeatureInfo(width, reduction, f"stages.{s}"))
    return modules, info


_TIMM_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(.*)$")


class ResNet(Backbone):
    """A bottleneck ResNet whose spatial mixers come from ``spec`` (see :class:`ResNetSpec`).

    ``forward(x (B, 3, H, W))`` → logits ``(B, num_classes)``; ``forward_features`` → ``(B, C_4, H/32, W/32)``;
    ``forward_head`` global-average-pools then ``fc``. Any input size works; Global/Axial relative tables are
    sized for ``img_size`` and interpolated for a larger input. A padding mask reaches every attention mixer
    (and non-local block) as ``key_padding_mask`` on its input grid; the stem and conv mixers see padding
    through their kernels.
    """

    classifier_names = ("fc",)
    stem_reduction = 4

    def __init__(self, spec: ResNetSpec, num_classes: int = 1000, img_size=224, in_chans: int = 3):
        super().__init__()
        self.spec, self.img_size, self._in_chans = spec, to_pair(img_size), in_chans
        self.stem = make_stem(spec.stem, spec.stem_width, in_chans)
        self.stages, self.feature_info = build_stages(spec, spec.stem_width, self.img_size)
        self.num_features = spec.widths[-1]
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.stem(x)  # (B, stem_width, H/4, W/4)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor | None]:
        """Stage ``i`` gets the mask on its input grid (the stem's for stage 0, else stage ``i-1``'s output);
        a body without attention gets none."""
        if not any(isinstance(m, (AttentionMixer, NonLocalBlock)) for m in self.stages.modules()):
            return [None] * len(self.stages)
        inputs = [self.stem_reduction] + [info.reduction for info in self.feature_info[:-1]]
        return [downsample_mask(padding_mask, r) for r in inputs]

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state  # already (B, C_i, H_i, W_i)

    def forward_norm(self, state: Tensor) -> Tensor:
        return state  # post-activation ResNet: no final norm

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """features ``(B, C, h, w)`` → pooled ``(B, C)`` (``pre_logits``) or logits ``(B, num_classes)``."""
        x = self.head_drop(features.mean(dim=(2, 3)))  # (B, C)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def convert_state_dict(self, state_dict: dict) -> dict:
        """A timm/torchvision ResNet state dict (``conv1``, ``bn1``, ``layerN.i.conv2``, ``fc``) → our names
        (``stem.conv``, ``stem.bn``, ``stages.{N-1}.i.mixer``, ``fc``). Other state dicts are returned as is.
        Only meaningful for specs with the 'resnet' stem and no non-local blocks (block indices are kept)."""
        if "layer1.0.conv1.weight" not in state_dict:
            return state_dict
        out = {}
        for key, value in state_dict.items():
            m = _TIMM_BLOCK.match(key)
            if m:
                rest = m.group(3).replace("conv2.", "mixer.", 1) if m.group(3).startswith("conv2.") else m.group(3)
                key = f"stages.{int(m.group(1)) - 1}.{m.group(2)}.{rest}"
            elif key.startswith(("conv1.", "bn1.")):
                key = ("stem.conv." if key.startswith("conv1.") else "stem.bn.") + key.split(".", 1)[1]
            out[key] = value
        return out


def build_resnet(spec: ResNetSpec, num_classes: int = 1000, img_size=224) -> ResNet:
    """Registry builder: ``builder(spec, num_classes=, img_size=)``."""
    return ResNet(spec, num_classes=num_classes, img_size=img_size)


# -- presets ---------------------------------------------------------------------------------------------
CNN = Taxonomy(purity="convolution", form="none", scales="multi", geometry="2d", block="bottleneck")
ATTN = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="2d", block="bottleneck")
HYBRID = Taxonomy(purity="hybrid", form="softmax", scales="multi", geometry="2d", block="bottleneck")


def sasa(heads: int = 8, kernel: int = 7) -> MixerSpec:
    """SASA: local ``kernel×kernel`` attention, zero-padding borders (masked), relative logits, 2×2 avg-pool
    after attention in stride-2 blocks."""
    return MixerSpec("attention", Neighborhood(kernel, border="pad"), "rel_logits", heads, downsample="pool")


def halo(heads: int = 8, block: int = 8, halo_size: int = 3) -> MixerSpec:
    """HaloNet: blocked local attention (``block`` queries per block, ``halo`` extra keys per side), relative
    logits; stride-2 blocks subsample the queries inside the operator."""
    return MixerSpec("attention", Halo(block, halo_size), "rel_logits", heads, downsample="query")


def bot(heads: int = 4) -> MixerSpec:
    """BoTNet: global (all-to-all) attention with 2D relative logits; stride-2 blocks average-pool after."""
    return MixerSpec("attention", Global(), "rel_logits", heads, downsample="pool")


def axial(heads: int = 8) -> MixerSpec:
    """Axial-DeepLab: height-then-width axial attention with relative logits; stride 2 by average pool."""
    return MixerSpec("axial", None, "rel_logits", heads, downsample="pool")


R26, R26_SASA, R50 = (2, 2, 2, 2), (1, 2, 4, 1), (3, 4, 6, 3)
C4 = (CONV3X3,) * 4
TEST_WIDTHS = (32, 64, 128, 256)


def _resnet(name, spec, taxonomy, paper, img_size=224, tiny=False, timm_twin=""):
    register(Preset(name, build_resnet, spec, taxonomy, img_size=img_size, tiny=tiny, paper=paper,
                    timm_twin=timm_twin))


# -- convolutional baselines ----------------------------------------------------------------------------
_resnet("resnet26", ResNetSpec(depths=R26, mixers=C4), CNN,
        "ResNet-26 baseline, timm resnet26 layout (2,2,2,2) (He et al. 2016)", timm_twin="resnet26")
_resnet("resnet50", ResNetSpec(depths=R50, mixers=C4), CNN,
        "ResNet-50 v1.5 (He et al. 2016), parameter- and state-dict-equal to timm resnet50", timm_twin="resnet50")
_resnet("resnet_test", ResNetSpec(depths=(1, 1, 1, 1), widths=TEST_WIDTHS, stem_width=16, mixers=C4), CNN,
        "tiny ResNet for tests", img_size=32, tiny=True)

# -- SASA: every 3x3 -> 7x7 neighborhood attention ---------------------------------------------------------
_resnet("sasa_resnet26", ResNetSpec(depths=R26_SASA, mixers=(sasa(),) * 4), ATTN,
        "SASA ResNet-26 [1,2,4,1], conv stem (Ramachandran et al. 2019, 'Stand-Alone Self-Attention')")
_resnet("sasa_resnet50", ResNetSpec(depths=R50, mixers=(sasa(),) * 4), ATTN,
        "SASA ResNet-50, conv stem (Ramachandran et al. 2019)")
_resnet("sasa_resnet_test", ResNetSpec(depths=(1, 1, 2, 1), widths=TEST_WIDTHS, stem_width=16,
                                       mixers=(sasa(heads=2),) * 4), ATTN,
        "tiny SASA ResNet for tests", img_size=32, tiny=True)

# -- HaloNet: blocked local attention --------------------------------------------------------------------
# H0: the paper's rb=0.5 read as timm reads H1's rb=1.0 (mid = rb * width) gives 2.9M params, not 5.5M. With
# ratio 0.75 (and no output projection in the mixer, as in the paper) we get 4.8M: the paper's remaining
# 0.7M (its final 1x1 expansion d_f is not fully specified) is not reproduced.
_resnet("halonet_h0", ResNetSpec(depths=(3, 3, 7, 3), widths=(64, 128, 256, 512), bottleneck_ratio=0.75,
                                 mixers=(halo(),) * 4), ATTN,
        "HaloNet-H0-like (Vaswani et al. 2021): b=8, h=3, l3=7, every 3x3 is halo attention, conv stem; widths "
        "of timm's halonet_h1, bottleneck ratio 0.75 (4.8M params vs the paper's 5.5M)",
        img_size=256)
# timm's halonet26t layout (ResNet-26, tiered stem, halo attention in stages 3-4; 12.5M params) with the paper's
# halo 3 (timm: 2), so no twin weights. Formerly 'halonet_tiny' (kept as a deprecated alias).
_resnet("halonet26t", ResNetSpec(depths=R26, stem="tiered", mixers=(CONV3X3, CONV3X3, (CONV3X3, halo()), halo())),
        HYBRID, "HaloNet-26t layout (timm halonet26t, 12.5M params) with the paper's halo 3 (timm: 2): halo "
        "attention in stages 3-4 (Vaswani et al. 2021)", img_size=256)
register_alias("halonet_tiny", "halonet26t")
_resnet("halonet_test", ResNetSpec(depths=(1, 1, 1, 2), widths=TEST_WIDTHS, stem_width=16,
                                   mixers=(halo(2, 4, 1),) * 4), ATTN,
        "tiny HaloNet for tests (block 4, halo 1)", img_size=64, tiny=True)

# -- BoTNet: global attention in the last stage -------------------------------------------------------------
_resnet("botnet26", ResNetSpec(depths=R26, stem="tiered", mixers=(*C4[:3], bot())), HYBRID,
        "BoTNet-26: ResNet-26 with the last stage's 3x3 -> MHSA, 4 heads, rel. logits (Srinivas et al. 2021)",
        img_size=256)
_resnet("botnet50", ResNetSpec(depths=R50, mixers=(*C4[:3], bot())), HYBRID,
        "BoT50: ResNet-50 with c5's 3x3 -> MHSA, 4 heads, rel. logits (Srinivas et al. 2021)")
_resnet("botnet_test", ResNetSpec(depths=(1, 1, 1, 2), widths=TEST_WIDTHS, stem_width=16,
                                  mixers=(*C4[:3], bot(heads=2))), HYBRID,
        "tiny BoTNet for tests", img_size=64, tiny=True)

# -- Axial-ResNet: height-then-width attention --------------------------------------------------------------
_resnet("axial_resnet26", ResNetSpec(depths=R26_SASA, mixers=(axial(),) * 4), ATTN,
        "Axial-ResNet-26 [1,2,4,1] (SASA layout), conv stem (Wang et al. 2020, 'Axial-DeepLab')")
_resnet("axial_resnet_test", ResNetSpec(depths=(1, 1, 2, 1), widths=TEST_WIDTHS, stem_width=16,
                                        mixers=(axial(heads=2),) * 4), ATTN,
        "tiny Axial-ResNet for tests", img_size=32, tiny=True)

# -- Non-local ResNet: global attention blocks inserted -----------------------------------------------------
_resnet("nonlocal_resnet50", ResNetSpec(depths=R50, mixers=C4, nonlocal_after=((), (0, 2), (0, 2, 4))), HYBRID,
        "Non-local ResNet-50, 5 blocks: 2 in res3 + 3 in res4, after every other block (Wang et al. 2018)")
_resnet("nonlocal_resnet_test", ResNetSpec(depths=(1, 2, 2, 1), widths=TEST_WIDTHS, stem_width=16, mixers=C4,
                                           nonlocal_after=((), (0,), (1,))), HYBRID,
        "tiny Non-local ResNet for tests", img_size=32, tiny=True)

__all__ = ["ATTN", "CNN", "HYBRID", "ResNet", "ResNetSpec", "axial", "bot", "build_resnet", "build_stages", "halo",
           "sasa"]
