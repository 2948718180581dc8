"""ResNet-style backbones whose spatial mixers are data: plain ResNet, SASA, HaloNet, BoTNet, Axial-ResNet and
Non-local ResNet are all :class:`ResNet` built from a different :class:`ResNetSpec`.

State between stages is NCHW ``(B, C, H, W)``. Stage ``i`` has reduction ``4 · 2^i`` (4, 8, 16, 32) and
``widths[i]`` channels; ``feature_info`` lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..layers.bottleneck import CONV3X3, BottleneckBlock, MixerSpec
from ..layers.nonlocal_block import NonLocalBlock
from ..layers.stems import STEM_KINDS, make_stem
from .backbone import Backbone, FeatureInfo

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


def _pair(img_size) -> tuple[int, int]:
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return int(h), int(w)


def _grid(hw: tuple[int, int], reduction: int) -> tuple[int, int]:
    return -(-hw[0] // reduction), -(-hw[1] // reduction)  # ceil: the conv arithmetic of 'same' strides


def build_stages(spec: ResNetSpec, in_chs: int, img_size, stages: int | None = None):
    """Stages ``0..stages-1`` of ``spec`` after a reduction-4 stem of ``in_chs`` channels.

    Returns ``(nn.ModuleList of nn.Sequential, list[FeatureInfo])``. ``img_size`` (int or ``(H, W)``) sizes
    relative tables of grid-wide attention (the largest grid each block will see).
    """
    hw = _pair(img_size)
    count = len(spec.depths) if stages is None else stages
    total = sum(spec.depths[:count])
    rates = torch.linspace(0, spec.drop_path, total).tolist() if total > 1 else [spec.drop_path] * total
    modules, info, reduction, k = nn.ModuleList(), [], 4, 0
    for s in range(count):
        width, stride = spec.widths[s], 1 if s == 0 else 2
        mid = max(1, int(round(width * spec.bottleneck_ratio)))
        after = set(spec.nonlocal_after[s]) if s < len(spec.nonlocal_after) else set()
        blocks = []
        for i, mixer in enumerate(spec.stage_mixers(s)):
            st = stride if i == 0 else 1
            grid = _grid(hw, reduction)  # this block's input grid (block 0: before its stride)
            blocks.append(BottleneckBlock(in_chs, mid, width, st, mixer, grid_size=grid, drop_path=rates[k],
                                          zero_init_last=spec.zero_init_last, backend=spec.backend))
            if i in after:
                blocks.append(NonLocalBlock(width, backend=spec.backend))
            in_chs, k = width, k + 1
            if i == 0:
                reduction *= st
        modules.append(nn.Sequential(*blocks))
        info.append(FeatureInfo(width, reduction, f"stages.{s}"))
    return modules, info


_TIMM_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(.*)$")


class ResNet(Backbone):
    """A bottleneck ResNet whose spatial mixers come from ``spec`` (see :class:`ResNetSpec`).

    ``forward(x (B, 3, H, W))`` → logits ``(B, num_classes)``; ``forward_features`` → ``(B, C_4, H/32, W/32)``;
    ``forward_head`` global-average-pools then ``fc``. Any input size works for conv, Neighborhood and Halo
    mixers; Global/Axial relative tables are sized for ``img_size`` and a larger input raises the operator's
    ``ValueError`` (covered vs needed offsets).
    """

    def __init__(self, spec: ResNetSpec, num_classes: int = 1000, img_size=224, in_chans: int = 3):
        super().__init__()
        self.spec, self.img_size, self._in_chans = spec, _pair(img_size), in_chans
        self.stem = make_stem(spec.stem, spec.stem_width, in_chans)
        self.stages, self.feature_info = build_stages(spec, spec.stem_width, self.img_size)
        self.num_features = spec.widths[-1]
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.stem(x)  # (B, stem_width, H/4, W/4)

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


__all__ = ["ResNet", "ResNetSpec", "build_resnet", "build_stages"]
