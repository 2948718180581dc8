"""CoAtNet (Dai et al. 2021): the spec, the :class:`CoAtNet` backbone and its presets. A convolutional stem, MBConv
stages, then Transformer stages whose attention is the operator with ``Global()`` and a relative bias table
(C-C-T-T for CoAtNet-0).

Every stage starts with a stride-2 block (the paper's downsampling): MBConv strides its depthwise conv, a
Transformer stage computes ``x ← Proj(Pool(x)) + Attention(Pool(Norm(x)))``. Convolutional stages keep
``(B, C, H, W)``; Transformer stages run channels-last ``(B, H, W, C)``; the layout changes at stage entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from ...layers.attention import Attention
from ...layers.drop import stage_drop_path_rates
from ...layers.mbconv import MBConv
from ...layers.padding import downsample_mask
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Global
from ..backbone import Backbone, FeatureInfo, init_linear
from ..registry import Preset, register
from ..sizes import check_multiple, to_pair
from ..taxonomy import Taxonomy

BLOCK_KINDS = ("mbconv", "transformer")


@dataclass(frozen=True)
class CoAtNetSpec:
    """Knobs of a CoAtNet. Stage ``i`` (after the stride-2 stem S0) has ``depths[i]`` blocks of kind
    ``blocks[i]`` with ``dims[i]`` channels; attention heads are ``dims[i] // head_dim``."""

    stem_dim: int = 64
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (2, 3, 5, 2)
    blocks: tuple[str, ...] = ("mbconv", "mbconv", "transformer", "transformer")
    head_dim: int = 32
    expand_ratio: float = 4.0  # MBConv inverted-bottleneck expansion
    se_ratio: float = 0.25
    mlp_ratio: float = 4.0
    drop_path: float = 0.2
    norm_eps: float = 1e-5
    backend: str = "auto"

    def __post_init__(self):
        if not len(self.dims) == len(self.depths) == len(self.blocks) or not self.dims:
            raise ValueError(f"CoAtNetSpec: dims {self.dims}, depths {self.depths} and blocks {self.blocks} need one "
                             "entry per stage")
        for i, (kind, dim, depth) in enumerate(zip(self.blocks, self.dims, self.depths, strict=True)):
            if kind not in BLOCK_KINDS:
                raise ValueError(f"CoAtNetSpec: blocks[{i}] must be one of {BLOCK_KINDS}, got {kind!r}")
            if depth < 1:
                raise ValueError(f"CoAtNetSpec: depths[{i}] must be ≥ 1 (its first block downsamples), got {depth}")
            if kind == "transformer" and dim % self.head_dim:
                raise ValueError(f"CoAtNetSpec: stage {i} width {dim} is not divisible by head_dim {self.head_dim}")


def _pool2x2(x: Tensor) -> Tensor:
    """Channels-last 2×2 average pooling: ``(B, H, W, C)`` → ``(B, H/2, W/2, C)`` (H, W even)."""
    B, H, W, C = x.shape
    return x.reshape(B, H // 2, 2, W // 2, 2, C).mean(dim=(2, 4))  # (B, H/2, W/2, C)


class DownsampleTransformerBlock(nn.Module):
    """The first block of a Transformer stage: ``(B, H, W, in_dim)`` → ``(B, H/2, W/2, dim)``.

    ``x ← Proj(Pool(x)) + DropPath(Attention(Expand(Pool(LN(x)))))`` then ``x ← x + DropPath(Mlp(LN(x)))``.
    ``Expand`` (Linear ``in_dim → dim``) widens the pooled tokens so the attention runs at the stage width;
    its composition with the qkv projection is the paper's ``in_dim → 3·dim`` projection.
    """

    def __init__(self, in_dim: int, dim: int, heads: int, grid_size: tuple[int, int], spec: CoAtNetSpec,
                 drop_path: float):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.norm1 = nn.LayerNorm(in_dim, eps=spec.norm_eps)
        self.expand = nn.Linear(in_dim, dim)
        self.attn = Attention(dim, heads, Global(), position="rel_bias", grid_size=grid_size, backend=spec.backend,
                              resize_position=True)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), act_layer=nn.GELU)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, H, W, in_dim)``; key_padding_mask ``(B, H/2, W/2)`` bool on the *pooled* grid the attention
        runs on (True = padding) → ``(B, H/2, W/2, dim)``."""
        shortcut = self.proj(_pool2x2(x))  # (B, H/2, W/2, dim)
        attn = self.attn(self.expand(_pool2x2(self.norm1(x))), key_padding_mask=key_padding_mask)  # (B, H/2, W/2, dim)
        x = shortcut + self.drop_path1(attn)
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class CoAtNetStage(nn.Module):
    """One stage. ``mbconv``: ``(B, in_dim, H, W)`` → ``(B, dim, H/2, W/2)``. ``transformer``: input in either
    layout (``in_channels_last``) → ``(B, H/2, W/2, dim)`` channels-last; ``grid_size`` is its output grid
    at the built ``img_size`` (the largest grid its relative tables cover)."""

    def __init__(self, kind: str, in_dim: int, dim: int, depth: int, grid_size: tuple[int, int],
                 in_channels_last: bool, spec: CoAtNetSpec, drop_path: list[float]):
        super().__init__()
        self.kind, self.in_channels_last, self.grid_size = kind, in_channels_last, grid_size
        self.channels_last = kind == "transformer"
        if kind == "mbconv":
            self.blocks = nn.Sequential(*[
                MBConv(in_dim if j == 0 else dim, dim, stride=2 if j == 0 else 1, expand_ratio=spec.expand_ratio,
                       se_ratio=spec.se_ratio, drop_path=drop_path[j]) for j in range(depth)
            ])
        else:
            heads = dim // spec.head_dim
            first = DownsampleTransformerBlock(in_dim, dim, heads, grid_size, spec, drop_path[0])
            rest = [TransformerBlock(dim, heads, pattern=Global(), position="rel_bias", mlp_ratio=spec.mlp_ratio,
                                     drop_path=drop_path[j], norm_eps=spec.norm_eps, grid_size=grid_size,
                                     backend=spec.backend, resize_position=True) for j in range(1, depth)]
            self.blocks = nn.Sequential(first, *rest)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """key_padding_mask: ``(B, H, W)`` bool on the stage's *input* grid; Transformer stages pool it with their
        tokens (a pooled token is padding when all four are), MBConv stages ignore it."""
        if self.channels_last and not self.in_channels_last:
            x = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        elif not self.channels_last and self.in_channels_last:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        if key_padding_mask is None or not self.channels_last:
            return self.blocks(x)
        mask = downsample_mask(key_padding_mask, 2)  # (B, H/2, W/2): the grid every block attends on
        for block in self.blocks:
            x = block(x, key_padding_mask=mask)  # (B, H/2, W/2, dim)
        return x


class CoAtNet(Backbone):
    """CoAtNet: images ``(B, 3, H, W)`` → logits ``(B, num_classes)``.

    Stem S0 (two 3×3 convs, the first stride 2) then ``len(dims)`` stages, each halving the grid: stage ``i``
    has reduction ``2^(i+2)``. Inputs must be multiples of ``2^(stages+1)`` (every stage halves its grid
    exactly). Relative tables of Transformer stages are built for ``img_size``; a larger input interpolates them
    (:mod:`visionattn.layers.resize`), as ViT interpolates its absolute table. A padding mask reaches the
    Transformer stages' attention as ``key_padding_mask``; the conv stem and MBConv stages see padding through
    their kernels.
    """

    def __init__(self, spec: CoAtNetSpec, num_classes: int = 1000, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = to_pair(img_size)
        self.stride = 2 ** (len(spec.dims) + 1)
        self.stem_reduction = 2
        self.input_multiple = self.stride
        self._check_size(*self.img_size, what="img_size")
        self.stem = nn.Sequential(
            nn.Conv2d(3, spec.stem_dim, 3, stride=2, padding=1),
            nn.BatchNorm2d(spec.stem_dim),
            nn.GELU(),
            nn.Conv2d(spec.stem_dim, spec.stem_dim, 3, padding=1),
        )
        rates = stage_drop_path_rates(spec.drop_path, spec.depths)
        stages, self.feature_info = [], []
        in_dim, channels_last = spec.stem_dim, False
        for i, (kind, dim, depth) in enumerate(zip(spec.blocks, spec.dims, spec.depths, strict=True)):
            reduction = 2 ** (i + 2)
            grid = (self.img_size[0] // reduction, self.img_size[1] // reduction)
            stages.append(CoAtNetStage(kind, in_dim, dim, depth, grid, channels_last, spec,
                                       rates[i]))
            self.feature_info.append(FeatureInfo(dim, reduction, f"stages.{i}"))
            in_dim, channels_last = dim, kind == "transformer"
        self.stages = nn.ModuleList(stages)
        self.num_features = in_dim
        self.norm = nn.LayerNorm(in_dim, eps=spec.norm_eps)
        self.num_classes = num_classes
        self.head = nn.Linear(in_dim, num_classes) if num_classes else nn.Identity()
        self.apply(init_linear)

    def _check_size(self, H: int, W: int, what: str = "input") -> None:
        check_multiple((H, W), self.stride, "CoAtNet", what,
                       f"stride-2 stem and {len(self.spec.dims)} downsampling stages")

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` → ``(B, stem_dim, H/2, W/2)``."""
        self._check_size(*x.shape[-2:])
        return self.stem(x)  # (B, stem_dim, H/2, W/2)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor | None]:
        """Transformer stage ``i`` gets the mask on its input grid (stride ``2^(i+1)``); MBConv stages none."""
        return [downsample_mask(padding_mask, 2 ** (i + 1)) if stage.channels_last else None
                for i, stage in enumerate(self.stages)]

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        if self.stages[index].channels_last:
            return state.permute(0, 3, 1, 2)  # (B, H_i, W_i, C_i) -> (B, C_i, H_i, W_i)
        return state  # (B, C_i, H_i, W_i)

    def forward_norm(self, state: Tensor) -> Tensor:
        if not self.stages[-1].channels_last:
            state = state.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        return self.norm(state)  # (B, H/32, W/32, C)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Features ``(B, H', W', C)`` → average over the grid ``(B, C)`` → logits ``(B, num_classes)``."""
        x = features.mean(dim=(1, 2))  # (B, C)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


# -- presets ---------------------------------------------------------------------------------------------
COATNET = Taxonomy(purity="hybrid", form="softmax", scales="multi", geometry="2d", block="mixed")
_PAPER = "Dai et al. 2021, CoAtNet: Marrying Convolution and Attention for All Data Sizes"

register(Preset("coatnet_0_224", CoAtNet, CoAtNetSpec(), COATNET, img_size=224, paper=_PAPER))
register(Preset(
    "coatnet_test", CoAtNet,
    CoAtNetSpec(stem_dim=8, dims=(8, 16, 32, 64), depths=(1, 1, 2, 1), head_dim=16, drop_path=0.0),
    COATNET, img_size=64, tiny=True, paper=_PAPER,
))

__all__ = ["COATNET", "CoAtNet", "CoAtNetSpec", "CoAtNetStage", "DownsampleTransformerBlock"]
