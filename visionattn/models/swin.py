"""Swin Transformer (Liu et al. 2021) as a spec → :class:`Backbone`: shifted-window attention is the operator
with ``Window(size, shift)`` and a relative bias table; patch merging makes the pyramid.

Module order follows timm (patch merging at the *start* of stages 1..3), so a timm Swin state dict maps onto
ours key by key (:meth:`Swin.convert_state_dict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

from ..layers.absolute import LearnedPositionEmbedding
from ..layers.embed import PatchEmbed
from ..layers.merging import PatchMerging
from ..layers.transformer import TransformerBlock
from ..ops.patterns import Window
from .backbone import Backbone, FeatureInfo, drop_path_rates, init_linear


@dataclass(frozen=True)
class SwinSpec:
    """Knobs of a Swin backbone. Stage ``i`` has ``embed_dim · 2^i`` channels, ``depths[i]`` blocks and
    ``heads[i]`` heads; blocks alternate ``Window(window, 0)`` and ``Window(window, window // 2)``."""

    patch: int = 4
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.2
    norm_eps: float = 1e-5
    ape: bool = False  # learned absolute position embedding after the stem (off in Swin's presets)
    backend: str = "auto"

    def __post_init__(self):
        if len(self.depths) != len(self.heads) or not self.depths:
            raise ValueError(f"SwinSpec: depths {self.depths} and heads {self.heads} need one entry per stage")
        for i, h in enumerate(self.heads):
            if (self.embed_dim * 2**i) % h:
                raise ValueError(f"SwinSpec: stage {i} width {self.embed_dim * 2**i} is not divisible by heads {h}")
        if self.patch < 1 or self.window < 1:
            raise ValueError(f"SwinSpec: patch and window must be ≥ 1, got patch={self.patch}, window={self.window}")


def stage_window(window: int, grid: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per-axis (window, shift) of a stage on ``grid`` (Swin/timm): an axis no longer than the window gets
    ``window = length`` and no shift; otherwise ``window`` and ``shift = window // 2``."""
    (h, w) = grid
    size = (min(window, h), min(window, w))
    shift = (0 if h <= window else window // 2, 0 if w <= window else window // 2)
    return size, shift


def _as_pattern_arg(pair: tuple[int, int]) -> int | tuple[int, int]:
    return pair[0] if pair[0] == pair[1] else pair


class SwinStage(nn.Module):
    """``(B, H, W, in_dim)`` → ``(B, H/2, W/2, dim)`` (``downsample``) or ``(B, H, W, dim)``: optional
    :class:`PatchMerging`, then Transformer blocks with regular (even index) and shifted (odd) windows."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, size: tuple[int, int],
                 shift: tuple[int, int], downsample: bool, drop_path: list[float], spec: SwinSpec):
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim, spec.norm_eps) if downsample else nn.Identity()
        self.window = size
        blocks = []
        for j in range(depth):
            pattern = Window(_as_pattern_arg(size), _as_pattern_arg(shift) if j % 2 else 0)
            blocks.append(TransformerBlock(dim, heads, pattern=pattern, position="rel_bias", mlp_ratio=spec.mlp_ratio,
                                           qkv_bias=spec.qkv_bias, drop_path=drop_path[j], norm_eps=spec.norm_eps,
                                           backend=spec.backend, dims=2))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))  # (B, H', W', dim)


class Swin(Backbone):
    """Swin Transformer: images ``(B, 3, H, W)`` → logits ``(B, num_classes)``.

    State between stages is channels-last ``(B, H_i, W_i, C_i)`` with ``H_i = H / (patch · 2^i)``. Windows
    are chosen for ``img_size`` (a stage whose grid is not larger than ``window`` attends globally, unshifted);
    other inputs work when H and W are multiples of ``patch · 2^(stages-1)`` and every stage grid is at least
    its window (larger grids are padded to whole windows, the padding masked by the operator — timm and Swin v1
    attend to zero padding instead, so results differ from theirs only at sizes the window does not divide).
    """

    def __init__(self, spec: SwinSpec, num_classes: int = 1000, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.stride = spec.patch * 2 ** (len(spec.depths) - 1)
        self._check_size(*self.img_size, what="img_size")
        grid = tuple(n // spec.patch for n in self.img_size)
        self.patch_embed = PatchEmbed(spec.patch, spec.embed_dim, norm=True, norm_eps=spec.norm_eps)
        self.pos_embed = LearnedPositionEmbedding(grid, spec.embed_dim) if spec.ape else None
        rates = drop_path_rates(spec.drop_path, sum(spec.depths))
        stages, self.feature_info, in_dim = [], [], spec.embed_dim
        for i, (depth, heads) in enumerate(zip(spec.depths, spec.heads, strict=True)):
            dim = spec.embed_dim * 2**i
            stage_grid = tuple(n // 2**i for n in grid)
            size, shift = stage_window(spec.window, stage_grid)
            first = sum(spec.depths[:i])
            stages.append(SwinStage(in_dim, dim, depth, heads, size, shift, downsample=i > 0,
                                    drop_path=rates[first:first + depth], spec=spec))
            self.feature_info.append(FeatureInfo(dim, spec.patch * 2**i, f"stages.{i}"))
            in_dim = dim
        self.stages = nn.ModuleList(stages)
        self.num_features = in_dim
        self.norm = nn.LayerNorm(in_dim, eps=spec.norm_eps)
        self.num_classes = num_classes
        self.head = nn.Linear(in_dim, num_classes) if num_classes else nn.Identity()
        self.apply(init_linear)

    # -- input checks ---------------------------------------------------------------------------------
    def _check_size(self, H: int, W: int, what: str = "input") -> None:
        if H % self.stride or W % self.stride:
            raise ValueError(
                f"Swin: {what} {H}×{W} must have H and W divisible by {self.stride} (patch {self.spec.patch} × "
                f"2^{len(self.spec.depths) - 1} merges); got H % {self.stride} = {H % self.stride}, "
                f"W % {self.stride} = {W % self.stride}"
            )

    def _check_windows(self, H: int, W: int) -> None:
        for i, stage in enumerate(self.stages):
            grid = (H // (self.spec.patch * 2**i), W // (self.spec.patch * 2**i))
            if grid[0] < stage.window[0] or grid[1] < stage.window[1]:
                need = tuple(w * self.spec.patch * 2**i for w in stage.window)
                raise ValueError(
                    f"Swin built for img_size {self.img_size} uses window {stage.window} in stage {i}, which needs "
                    f"an input of at least {need[0]}×{need[1]}; got {H}×{W} (stage grid {grid[0]}×{grid[1]}). "
                    f"Create the model with img_size=({H}, {W}) for this resolution."
                )

    # -- Backbone contract ----------------------------------------------------------------------------
    def forward_stem(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` → tokens ``(B, H/patch, W/patch, embed_dim)``."""
        H, W = x.shape[-2:]
        self._check_size(H, W)
        self._check_windows(H, W)
        x = self.patch_embed(x)  # (B, H/p, W/p, C)
        return x if self.pos_embed is None else self.pos_embed(x)

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state.permute(0, 3, 1, 2)  # (B, H_i, W_i, C_i) -> (B, C_i, H_i, W_i)

    def forward_norm(self, state: Tensor) -> Tensor:
        return self.norm(state)  # (B, H/32, W/32, C)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Features ``(B, H', W', C)`` → average over the grid ``(B, C)`` → logits ``(B, num_classes)``."""
        x = features.mean(dim=(1, 2))  # (B, C)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    # -- checkpoint import ----------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A timm Swin state dict (or an original Microsoft one) → our keys and layouts.

        * ``layers.i`` → ``stages.i``; ``head.fc`` → ``head``; the ``relative_position_index`` and
          ``attn_mask`` buffers are dropped. Original checkpoints (downsample at the *end* of stage i, a
          plain ``head``) are recognised by ``layers.0.downsample`` and moved to the start of stage i+1.
        * ``attn.relative_position_bias_table`` ``((2w_h-1)·(2w_w-1), heads)`` indexed by query − key →
          ``attn.position.table`` ``(heads, 2w_h-1, 2w_w-1)`` indexed by key − query: both offset axes flipped.
        Keys that are already ours pass through unchanged. PatchMerging's neighbour order is the same.
        """
        if isinstance(state_dict.get("model"), dict):
            state_dict = state_dict["model"]
        original = "layers.0.downsample.reduction.weight" in state_dict
        out = {}
        for key, value in state_dict.items():
            if key.endswith(("relative_position_index", "attn_mask")):
                continue
            if original:
                key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
            key = re.sub(r"^layers\.", "stages.", key)
            key = re.sub(r"^head\.fc\.", "head.", key)
            if key.endswith("attn.relative_position_bias_table"):
                key = key[: -len("relative_position_bias_table")] + "position.table"
                value = self._table_from_timm(key, value)
            out[key] = value
        return out

    def _table_from_timm(self, key: str, value: Tensor) -> Tensor:
        try:
            heads, a, b = self.get_parameter(key).shape
        except AttributeError:
            return value  # an unexpected key: strict loading reports it
        if tuple(value.shape) != (a * b, heads):
            return value  # a shape mismatch: strict loading reports it with both shapes
        table = value.reshape(a, b, heads)  # [Δh + R_h, Δw + R_w, head] with Δ = query − key
        return table.flip(0, 1).permute(2, 0, 1).contiguous()  # (heads, a, b) with Δ = key − query


__all__ = ["Swin", "SwinSpec", "SwinStage", "stage_window"]
