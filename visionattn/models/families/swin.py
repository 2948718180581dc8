"""Swin Transformer (Liu et al. 2021): the spec, the :class:`Swin` backbone, its checkpoint converter and its
presets. Shifted-window attention is the operator with ``Window(size, shift)`` and a relative bias table; patch
merging makes the pyramid.

Module order follows timm (patch merging at the *start* of stages 1..3), so a timm Swin state dict maps onto
ours key by key (:meth:`Swin.convert_state_dict`).

Any input whose sides are multiples of the patch runs (detection-style): a stage grid that its window does not
divide is padded to whole windows *inside the operator*, and the padding is masked (never attended, never
averaged in — timm and Swin v1 attend to zero padding instead, so results differ from theirs only at sizes the
window does not divide); a stage grid smaller than the window uses the whole grid as the window, unshifted (as
timm); an odd grid is zero-padded before patch merging (as timm). Windows follow timm's ``set_input_size`` with a
fixed window, so logits equal timm's wherever every stage grid is a multiple of the window built for it; a window
larger than the built one interpolates the relative table (as timm), a smaller one uses the table's centre (exact;
timm interpolates).
At the built ``img_size`` nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

from ...layers.absolute import LearnedPositionEmbedding
from ...layers.drop import stage_drop_path_rates
from ...layers.embed import PatchEmbed
from ...layers.merging import PatchMerging
from ...layers.padding import downsample_mask
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Window
from ..backbone import Backbone, FeatureInfo, init_linear
from ..registry import Preset, register
from ..sizes import check_multiple, to_pair
from ..taxonomy import Taxonomy


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
    size = tuple(min(window, n) for n in grid)
    shift = tuple(s // 2 if n > s else 0 for s, n in zip(size, grid, strict=True))
    return size, shift


def _as_pattern_arg(pair: tuple[int, ...]) -> int | tuple[int, ...]:
    return pair[0] if all(p == pair[0] for p in pair) else tuple(pair)


def fit_window(window: int, shifted: bool, grid: tuple[int, ...]) -> Window:
    """The ``Window`` pattern of a block on ``grid`` (timm's rule, applied at every call): per axis the window is
    ``min(window, length)``; shifted blocks shift by half of it where the axis is longer than the window, others
    (and axes that are one whole window) do not shift. A grid the window does not divide is padded to whole
    windows inside the operator, the padding masked."""
    size, shift = stage_window(window, grid)
    shift = shift if shifted else (0,) * len(grid)
    return Window(_as_pattern_arg(size), _as_pattern_arg(shift) if any(shift) else 0)


class SwinStage(nn.Module):
    """``(B, H, W, in_dim)`` → ``(B, ceil(H/2), ceil(W/2), dim)`` (``downsample``) or ``(B, H, W, dim)``:
    optional :class:`PatchMerging`, then Transformer blocks with regular (even index) and shifted (odd) windows
    fitted to the grid of each call (:func:`fit_window`). Relative tables are sized for the windows at the built
    grid; a larger window at another input size interpolates them, a smaller one uses their centre."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, grid: tuple[int, int], downsample: bool,
                 drop_path: list[float], spec: SwinSpec):
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim, spec.norm_eps) if downsample else nn.Identity()
        self.window_target = spec.window
        self.window = stage_window(spec.window, grid)[0]  # at the built grid
        self.blocks = nn.Sequential(*[
            TransformerBlock(dim, heads, pattern=fit_window(spec.window, j % 2 == 1, grid), position="rel_bias",
                             mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias, drop_path=drop_path[j],
                             norm_eps=spec.norm_eps, backend=spec.backend, dims=2, resize_position=True)
            for j in range(depth)
        ])

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, H, W, in_dim)``; key_padding_mask ``(B, H, W)`` bool on the input grid (True = padding)."""
        x = self.downsample(x)  # (B, H', W', dim)
        grid = tuple(x.shape[1:3])
        if key_padding_mask is not None and tuple(key_padding_mask.shape[1:]) != grid:
            key_padding_mask = downsample_mask(key_padding_mask, 2)  # (B, H', W'): merged tokens
        for j, block in enumerate(self.blocks):
            pattern = fit_window(self.window_target, j % 2 == 1, grid)
            x = block(x, key_padding_mask=key_padding_mask,
                      pattern=None if pattern == block.attn.pattern else pattern)  # (B, H', W', dim)
        return x


class Swin(Backbone):
    """Swin Transformer: images ``(B, 3, H, W)`` → logits ``(B, num_classes)``.

    State between stages is channels-last ``(B, H_i, W_i, C_i)`` with ``H_i = ceil(H / (patch · 2^i))``.
    Windows are chosen for ``img_size`` (a stage whose grid is not larger than ``window`` attends globally,
    unshifted); other inputs need only H and W multiples of ``patch`` (see the module docstring for how windows
    fit them). A padding mask ``(B, H, W)`` reaches every block as ``key_padding_mask`` (merged tokens are
    padding when all four halves are).
    """

    def __init__(self, spec: SwinSpec, num_classes: int = 1000, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = to_pair(img_size)
        self.stem_reduction = self.input_multiple = spec.patch
        check_multiple(self.img_size, spec.patch, "Swin", "img_size", f"patch {spec.patch}")
        grid = tuple(n // spec.patch for n in self.img_size)
        self.patch_embed = PatchEmbed(spec.patch, spec.embed_dim, norm=True, norm_eps=spec.norm_eps)
        self.pos_embed = LearnedPositionEmbedding(grid, spec.embed_dim) if spec.ape else None
        rates = stage_drop_path_rates(spec.drop_path, spec.depths)
        stages, self.feature_info, in_dim = [], [], spec.embed_dim
        for i, (depth, heads) in enumerate(zip(spec.depths, spec.heads, strict=True)):
            dim = spec.embed_dim * 2**i
            stage_grid = tuple(-(-n // 2**i) for n in grid)  # ceil: odd grids are padded before merging
            stages.append(SwinStage(in_dim, dim, depth, heads, stage_grid, downsample=i > 0,
                                    drop_path=rates[i], spec=spec))
            self.feature_info.append(FeatureInfo(dim, spec.patch * 2**i, f"stages.{i}"))
            in_dim = dim
        self.stages = nn.ModuleList(stages)
        self.num_features = in_dim
        self.norm = nn.LayerNorm(in_dim, eps=spec.norm_eps)
        self.num_classes = num_classes
        self.head = nn.Linear(in_dim, num_classes) if num_classes else nn.Identity()
        self.apply(init_linear)

    # -- Backbone contract ----------------------------------------------------------------------------
    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` (H, W multiples of the patch) → tokens ``(B, H/patch, W/patch, embed_dim)``."""
        check_multiple(tuple(x.shape[-2:]), self.spec.patch, "Swin", "input", f"patch {self.spec.patch}")
        x = self.patch_embed(x)  # (B, H/p, W/p, C)
        if self.pos_embed is None:
            return x
        token_mask = None if padding_mask is None else downsample_mask(padding_mask, self.spec.patch)
        return self.pos_embed(x, padding_mask=token_mask)  # embedding fitted to each image's content

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        """Stage ``i`` gets the mask on its input grid (stride ``patch · 2^(i-1)``; the patch grid for stage 0)."""
        p = self.spec.patch
        return [downsample_mask(padding_mask, p * 2 ** max(i - 1, 0)) for i in range(len(self.stages))]

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


# -- presets ---------------------------------------------------------------------------------------------
SWIN = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="2d", block="transformer")
_PAPER = "Liu et al. 2021, Swin Transformer: Hierarchical Vision Transformer using Shifted Windows"

for _name, _spec, _size, _tiny, _twin in (
    ("swin_tiny_patch4_window7_224", SwinSpec(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)), 224, False,
     "swin_tiny_patch4_window7_224"),
    ("swin_small_patch4_window7_224",
     SwinSpec(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3), 224, False,
     "swin_small_patch4_window7_224"),
    ("swin_base_patch4_window7_224",
     SwinSpec(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5), 224, False,
     "swin_base_patch4_window7_224"),
    # a small model for users: Swin-T's layout at half width and depth 2 per stage (5.5M params, 0.8 GMACs)
    ("swin_nano_patch4_window7_224",
     SwinSpec(embed_dim=48, depths=(2, 2, 2, 2), heads=(3, 6, 12, 24), drop_path=0.1), 224, False, ""),
    # test variant: grids 16, 8, 4, 2 at 64 px; shifted windows in stages 0 and 1, global in 2 and 3
    ("swin_test", SwinSpec(embed_dim=16, depths=(2, 2, 1, 1), heads=(1, 2, 4, 8), window=4, drop_path=0.0), 64, True,
     ""),
):
    register(Preset(_name, Swin, _spec, SWIN, img_size=_size, tiny=_tiny, paper=_PAPER, timm_twin=_twin))

__all__ = ["SWIN", "Swin", "SwinSpec", "SwinStage", "fit_window", "stage_window"]
