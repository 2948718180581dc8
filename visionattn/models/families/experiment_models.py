"""Presets for the experiments (``experiments/*.yaml``): one small attention ResNet whose every knob is a scalar,
so an experiment's variants are plain ``model.overrides`` (``pattern=halo``, ``position=absolute``).

:class:`AttnResNetSpec` is a SASA-style bottleneck ResNet (every 3×3 conv of the body replaced by attention, a
conv stem kept) with

* ``pattern``: ``'neighborhood'`` (SASA, zero-padded borders), ``'halo'`` (HaloNet blocks), ``'window'``
  (Swin windows, shifted in every second block of a stage), ``'axial'`` (height then width), ``'global'``
  (BoTNet) or ``'conv'`` (a plain 3×3 ResNet: the convolutional twin);
* ``position``: ``'none'``, ``'absolute'`` (a learned embedding ``(1, H, W, C)`` added to the input of every
  attention mixer), ``'sincos'`` (the fixed 2D sin-cos embedding, added the same way), ``'rel_bias'`` (a scalar
  per head and offset), ``'rel_logits'`` (``q·r``, SASA) or ``'rope'`` (2D rotary);
* ``stem_stride``: 2 (two 3×3 conv-BN-ReLU, the first strided: a 32×32 image gives grids 16, 8, 4, 2) or 4
  (ResNet's 7×7/2 + max-pool: grids 8, 4, 2, 1), so small images keep a grid on which locality means something.

Layout: NCHW maps ``(B, C, H, W)`` between blocks (as :class:`visionattn.models.families.resnet.ResNet`); stage
``i`` has ``widths[i]`` channels and reduction ``stem_stride · 2^i``. A ``window`` is clipped per stage to the
stage's grid at ``img_size`` (a smaller input than that raises the operator's error); ``global`` and ``axial``
relative tables are sized for ``img_size`` and interpolated for larger inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ...layers.absolute import LearnedPositionEmbedding, SinCosPositionEmbedding
from ...layers.bottleneck import CONV3X3, MixerSpec
from ...layers.stems import ConvBnAct, make_stem
from ...ops.patterns import Global, Halo, Neighborhood, Window
from ..backbone import Backbone, FeatureInfo
from ..registry import Preset, register
from ..sizes import ceil_grid, to_pair
from ..taxonomy import Taxonomy
from .resnet import ResNet, ResNetSpec, build_stages

PATTERNS = ("neighborhood", "halo", "window", "axial", "global", "conv")
POSITIONS = ("none", "absolute", "sincos", "rel_bias", "rel_logits", "rope")
ABSOLUTE = ("absolute", "sincos")


@dataclass(frozen=True)
class AttnResNetSpec:
    """A small attention ResNet for experiments (see the module docstring for ``pattern`` / ``position``).

    depths / widths / bottleneck_ratio: as :class:`~visionattn.models.families.resnet.ResNetSpec` (mixer width =
    ``width · ratio``). stem_width: stem output channels; stem_stride: 2 or 4. kernel: the Neighborhood kernel,
    the Window size and the Halo block. halo: Halo's extra keys per side. heads: attention heads (must divide
    every mixer width). drop_path: stochastic depth, rising linearly to this rate. backend: operator backend.
    """

    depths: tuple[int, ...] = (1, 1, 2, 1)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    bottleneck_ratio: float = 0.25
    stem_width: int = 32
    stem_stride: int = 2
    pattern: str = "neighborhood"
    kernel: int = 5
    halo: int = 1
    heads: int = 4
    position: str = "rel_logits"
    drop_path: float = 0.0
    backend: str = "auto"

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"AttnResNetSpec.pattern: expected one of {PATTERNS}, got {self.pattern!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"AttnResNetSpec.position: expected one of {POSITIONS}, got {self.position!r}")
        if self.stem_stride not in (2, 4):
            raise ValueError(f"AttnResNetSpec.stem_stride: expected 2 or 4, got {self.stem_stride!r}")
        if self.kernel < 1 or self.halo < 0 or self.heads < 1:
            raise ValueError(f"AttnResNetSpec: expected kernel >= 1, halo >= 0, heads >= 1; got kernel={self.kernel}, "
                             f"halo={self.halo}, heads={self.heads}")
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError(f"AttnResNetSpec: one depth per width expected, got depths {self.depths}, widths "
                             f"{self.widths}")
        for w in self.widths:
            mid = max(1, int(round(w * self.bottleneck_ratio)))
            if self.pattern != "conv" and mid % self.heads:
                raise ValueError(f"AttnResNetSpec: mixer width {mid} (= {w} x {self.bottleneck_ratio}) is not "
                                 f"divisible by heads {self.heads}")
            if self.pattern != "conv" and self.position == "rope" and (mid // self.heads) % 4:
                raise ValueError(f"AttnResNetSpec: position 'rope' on a 2D grid needs head_dim divisible by 4, got "
                                 f"{mid // self.heads} (mixer width {mid} / heads {self.heads})")

    def stage_grids(self, img_size) -> list[tuple[int, int]]:
        """The input grid ``(H, W)`` of each stage's first block at ``img_size``."""
        hw = to_pair(img_size)
        return [ceil_grid(hw, self.stem_stride * 2 ** max(s - 1, 0)) for s in range(len(self.depths))]

    def mixers(self, img_size) -> tuple:
        """Per stage, the :class:`MixerSpec` cycle of its blocks (Window: unshifted then shifted)."""
        inner = "none" if self.position in ABSOLUTE else self.position
        out = []
        for s, (h, w) in enumerate(self.stage_grids(img_size)):
            if self.pattern == "conv":
                out.append(CONV3X3)
                continue
            if self.pattern == "axial":
                out.append(MixerSpec("axial", None, inner, self.heads))
                continue
            if self.pattern == "window":
                # block 0 attends on the stage's input grid (then pools), later blocks on its output grid
                out_grid = (h, w) if s == 0 else (-(-h // 2), -(-w // 2))
                size = max(1, min(self.kernel, *(out_grid if self.depths[s] > 1 else (h, w))))
                plain = MixerSpec("attention", Window(size), inner, self.heads)
                shifted = (MixerSpec("attention", Window(size, size // 2), inner, self.heads)
                           if size > 1 and min(out_grid) > size else plain)
                out.append((plain, shifted))
                continue
            if self.pattern == "neighborhood":
                pattern = Neighborhood(self.kernel, border="pad")
            else:
                pattern = Halo(self.kernel, self.halo) if self.pattern == "halo" else Global()
            out.append(MixerSpec("attention", pattern, inner, self.heads))
        return tuple(out)


class AbsolutePositionMixer(nn.Module):
    """An absolute embedding added to the input of an attention mixer: ``(B, C, H, W)`` → ``mixer(x + pos)``.

    ``kind``: ``'absolute'`` (learned ``(1, *grid, C)``, interpolated for other grids) or ``'sincos'`` (fixed)."""

    def __init__(self, mixer: nn.Module, kind: str, grid: tuple[int, int], dim: int):
        super().__init__()
        self.pos = LearnedPositionEmbedding(grid, dim) if kind == "absolute" else SinCosPositionEmbedding(dim)
        self.mixer = mixer

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, C, H, W)``; key_padding_mask ``(B, H, W)`` bool, passed to the attention mixer."""
        x = self.pos(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, H, W) + position
        return self.mixer(x) if key_padding_mask is None else self.mixer(x, key_padding_mask=key_padding_mask)


class AttnResNet(ResNet):
    """``forward(x (B, 3, H, W))`` → logits ``(B, num_classes)``; ``forward_features`` → ``(B, C_last, h, w)``.
    A :class:`~visionattn.models.families.resnet.ResNet` (same head, stage maps and classifier) with its own stem and
    mixers; only the construction differs."""

    def __init__(self, spec: AttnResNetSpec, num_classes: int = 1000, img_size=32):
        Backbone.__init__(self)  # ResNet.__init__ builds from a ResNetSpec; the parts are built here
        self.spec, self.img_size, self._in_chans = spec, to_pair(img_size), 3
        self.stem_reduction = spec.stem_stride
        if spec.stem_stride == 4:
            self.stem = make_stem("resnet", spec.stem_width)
        else:
            self.stem = nn.Sequential(ConvBnAct(3, spec.stem_width // 2, 3, stride=2),
                                      ConvBnAct(spec.stem_width // 2, spec.stem_width, 3))  # (B, C, H/2, W/2)
        resnet_spec = ResNetSpec(depths=spec.depths, widths=spec.widths, bottleneck_ratio=spec.bottleneck_ratio,
                                 mixers=spec.mixers(img_size), stem_width=spec.stem_width, drop_path=spec.drop_path,
                                 backend=spec.backend)
        # build_stages counts from a reduction-4 stem: a stride-2 stem sees the grids of an image twice as large
        scale = 4 // spec.stem_stride
        build_size = (self.img_size[0] * scale, self.img_size[1] * scale)
        self.stages, info = build_stages(resnet_spec, spec.stem_width, build_size)
        self.feature_info = [FeatureInfo(i.num_chs, i.reduction // scale, i.module) for i in info]
        if spec.position in ABSOLUTE:
            for s, stage in enumerate(self.stages):
                grid = spec.stage_grids(img_size)[s]
                for i, block in enumerate(stage):
                    g = grid if i == 0 else (ceil_grid(self.img_size, self.feature_info[s].reduction))
                    block.mixer = AbsolutePositionMixer(block.mixer, spec.position, g, block.conv1.out_channels)
        self.num_features = spec.widths[-1]
        self.head_drop = nn.Dropout(resnet_spec.drop_rate)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def build_attn_resnet(spec: AttnResNetSpec, num_classes: int = 1000, img_size=32) -> AttnResNet:
    """Registry builder: ``builder(spec, num_classes=, img_size=)``."""
    return AttnResNet(spec, num_classes=num_classes, img_size=img_size)


ATTN_RESNET = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="2d", block="bottleneck")
_PAPER = ("experiment backbone: SASA-style attention ResNet for 32x32 images, pattern/position as scalar "
          "overrides (Ramachandran et al. 2019; experiments/posenc_ablation.yaml, local_vs_global.yaml)")

register(Preset("exp_attn_resnet", build_attn_resnet, AttnResNetSpec(), ATTN_RESNET, img_size=32, paper=_PAPER))
register(Preset("exp_attn_resnet_test", build_attn_resnet,
                AttnResNetSpec(depths=(1, 1, 1, 1), widths=(32, 64, 128, 128), stem_width=8, heads=2, kernel=3),
                ATTN_RESNET, img_size=32, tiny=True, paper="tiny exp_attn_resnet for tests"))

__all__ = ["ABSOLUTE", "PATTERNS", "POSITIONS", "AbsolutePositionMixer", "AttnResNet", "AttnResNetSpec",
           "build_attn_resnet"]
