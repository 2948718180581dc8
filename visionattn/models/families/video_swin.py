"""Video Swin Transformer (Liu et al. 2022): Swin's shifted windows in space *and* time. The spec, the
:class:`VideoSwin` backbone, its converter (torchvision's ``SwinTransformer3d``, e.g. ``swin3d_t``) and presets.

Each block is the one :class:`~visionattn.layers.Attention` with the operator's 3-D window pattern
``Window((t, w, w), shift=(t/2, w/2, w/2))`` (every other block shifted) and a 3-D relative position bias; the
tubelet stem is a ``2 × 4 × 4`` Conv3d + LayerNorm; patch merging halves H and W of every frame (time is kept).
Windows are fitted to each call's grid as in torchvision / the paper: an axis no longer than the window uses the
whole axis as window, unshifted. A grid the window does not divide is padded to whole windows inside the operator
and the padding is masked (torchvision attends to zero padding instead, so results differ only at such sizes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from torch import Tensor, nn

from ...layers.drop import stage_drop_path_rates
from ...layers.merging import PatchMerging
from ...layers.padding import downsample_mask
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Window
from ..backbone import Backbone, FeatureInfo, init_linear
from ..registry import Preset, register
from ..sizes import check_multiple, to_pair
from ..taxonomy import Taxonomy
from .video_blocks import TubeletEmbed

__all__ = ["VIDEO_SWIN_TAXONOMY", "VideoSwin", "VideoSwinSpec", "VideoSwinStage", "fit_window_3d"]


@dataclass(frozen=True)
class VideoSwinSpec:
    """Stage ``i``: ``embed_dim · 2^i`` channels, ``depths[i]`` blocks, ``heads[i]`` heads; blocks alternate the
    window ``window = (t, h, w)`` unshifted and shifted by half of it. num_frames: the clip length it is built for
    (windows are fitted at every call, so any length that the patch divides runs)."""

    num_frames: int = 32
    patch: tuple[int, int, int] = (2, 4, 4)
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.1
    norm_eps: float = 1e-5
    backend: str = "auto"

    def __post_init__(self):
        if len(self.depths) != len(self.heads) or not self.depths:
            raise ValueError(f"VideoSwinSpec: depths {self.depths} and heads {self.heads} need one entry per stage")
        for i, h in enumerate(self.heads):
            if (self.embed_dim * 2**i) % h:
                raise ValueError(f"VideoSwinSpec: stage {i} width {self.embed_dim * 2**i} is not divisible by "
                                 f"heads {h}")
        for name in ("patch", "window"):
            value = tuple(getattr(self, name))
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"VideoSwinSpec.{name} must be 3 positive ints (t, h, w), got {value!r}")
        if self.num_frames % self.patch[0]:
            raise ValueError(f"VideoSwinSpec: num_frames {self.num_frames} is not a multiple of the patch's "
                             f"{self.patch[0]} frames")


def fit_window_3d(window: tuple[int, int, int], shifted: bool, grid: tuple[int, int, int]) -> Window:
    """The block's pattern on ``grid`` ``(T, H, W)``: per axis ``min(window, length)``; a shifted block shifts by half
    of it where the axis is longer than the window (torchvision's ``_get_window_and_shift_size``)."""
    size = tuple(min(w, n) for w, n in zip(window, grid, strict=True))
    shift = tuple(s // 2 if shifted and n > s else 0 for s, n in zip(size, grid, strict=True))
    return Window(size, shift if any(shift) else 0)


class VideoSwinStage(nn.Module):
    """``(B, T, H, W, in_dim)`` → ``(B, T, ceil(H/2), ceil(W/2), dim)`` (``downsample``: patch merging in every
    frame) or ``(B, T, H, W, dim)``; then Transformer blocks with 3-D windows, regular (even index) and shifted."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, downsample: bool, drop_path: list[float],
                 spec: VideoSwinSpec):
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim, spec.norm_eps) if downsample else None
        self.window = tuple(spec.window)
        self.blocks = nn.Sequential(*[
            TransformerBlock(dim, heads, pattern=Window(self.window, tuple(w // 2 for w in self.window) if j % 2
                                                        else 0), position="rel_bias", mlp_ratio=spec.mlp_ratio,
                             qkv_bias=spec.qkv_bias, drop_path=drop_path[j], norm_eps=spec.norm_eps,
                             backend=spec.backend, dims=3, resize_position=True)
            for j in range(depth)
        ])

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, T, H, W, in_dim)``; key_padding_mask ``(B, T, H, W)`` on the input grid (True = padding)."""
        if self.downsample is not None:
            B, T = x.shape[:2]
            x = self.downsample(x.flatten(0, 1))  # (B·T, H', W', dim)
            x = x.reshape(B, T, *x.shape[1:])  # (B, T, H', W', dim)
            if key_padding_mask is not None:
                key_padding_mask = downsample_mask(key_padding_mask, (1, 2, 2))  # (B, T, H', W')
        grid = tuple(x.shape[1:4])
        for j, block in enumerate(self.blocks):
            x = block(x, key_padding_mask=key_padding_mask,
                      pattern=fit_window_3d(self.window, j % 2 == 1, grid))  # (B, T, H', W', dim)
        return x


class VideoSwin(Backbone):
    """Video Swin: videos ``(B, 3, T, H, W)`` (T a multiple of the patch's t, H and W of its p) → logits.

    State between stages: ``(B, T/t, H_i, W_i, C_i)`` with ``H_i = ceil(H / (p · 2^i))``. A padding mask
    ``(B, T, H, W)`` reaches every block as ``key_padding_mask`` on its grid. Maps ``(B, C_i, T/t, H_i, W_i)``.
    """

    input_kind = "video"

    def __init__(self, spec: VideoSwinSpec, num_classes: int = 400, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = to_pair(img_size)
        t, p, q = spec.patch
        check_multiple(self.img_size[:1], p, "VideoSwin", "img_size height", f"patch {spec.patch}")
        check_multiple(self.img_size[1:], q, "VideoSwin", "img_size width", f"patch {spec.patch}")
        self.num_frames, self.frame_multiple, self.input_multiple = spec.num_frames, t, math.lcm(p, q)
        self.patch_embed = TubeletEmbed(spec.patch, spec.embed_dim, norm=True, norm_eps=spec.norm_eps)
        rates = stage_drop_path_rates(spec.drop_path, spec.depths)
        stages, self.feature_info, in_dim = [], [], spec.embed_dim
        for i, (depth, heads) in enumerate(zip(spec.depths, spec.heads, strict=True)):
            dim = spec.embed_dim * 2**i
            stages.append(VideoSwinStage(in_dim, dim, depth, heads, downsample=i > 0,
                                         drop_path=rates[i], spec=spec))
            self.feature_info.append(FeatureInfo(dim, p * 2**i, f"stages.{i}"))
            in_dim = dim
        self.stages = nn.ModuleList(stages)
        self.num_features = in_dim
        self.norm = nn.LayerNorm(in_dim, eps=spec.norm_eps)
        self.num_classes = num_classes
        self.head = nn.Linear(in_dim, num_classes) if num_classes else nn.Identity()
        self.apply(init_linear)

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Videos ``(B, 3, T, H, W)`` → tokens ``(B, T/t, H/p, W/p, embed_dim)`` (tubelet Conv3d + LayerNorm)."""
        return self.patch_embed(x)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        """Stage ``i`` gets the mask on its input grid (the tubelet grid for stages 0 and 1, then halved)."""
        t, p, q = self.spec.patch
        return [downsample_mask(padding_mask, (t, p * 2 ** max(i - 1, 0), q * 2 ** max(i - 1, 0)))
                for i in range(len(self.stages))]

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state.permute(0, 4, 1, 2, 3)  # (B, T', H_i, W_i, C_i) -> (B, C_i, T', H_i, W_i)

    def forward_norm(self, state: Tensor) -> Tensor:
        return self.norm(state)  # (B, T', H', W', C)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Features ``(B, T', H', W', C)`` → the mean token ``(B, C)`` → logits ``(B, num_classes)``."""
        x = features.mean(dim=(1, 2, 3))  # (B, C)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    # -- checkpoint import ----------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """torchvision ``SwinTransformer3d`` keys → ours: ``features.2s.j`` → ``stages.s.blocks.j``,
        ``features.2s+1`` (patch merging after stage s) → ``stages.s+1.downsample``, ``mlp.0/3`` → ``mlp.fc1/2``;
        ``attn.relative_position_bias_table ((2t-1)(2h-1)(2w-1), heads)`` indexed by query − key →
        ``attn.position.table (heads, 2t-1, 2h-1, 2w-1)`` indexed by key − query; the index buffers are dropped."""
        out = {}
        for key, value in state_dict.items():
            if key.endswith("relative_position_index"):
                continue
            m = re.match(r"^features\.(\d+)\.(.*)$", key)
            if m:
                index, rest = int(m.group(1)), m.group(2)
                if index % 2:
                    key = f"stages.{index // 2 + 1}.downsample.{rest}"
                else:
                    rest = re.sub(r"^(\d+)\.mlp\.0\.", r"\1.mlp.fc1.", rest)
                    rest = re.sub(r"^(\d+)\.mlp\.3\.", r"\1.mlp.fc2.", rest)
                    key = f"stages.{index // 2}.blocks.{rest}"
            if key.endswith("attn.relative_position_bias_table"):
                key = key[: -len("relative_position_bias_table")] + "position.table"
                value = self._table_from_torchvision(key, value)
            out[key] = value
        return out

    def _table_from_torchvision(self, key: str, value: Tensor) -> Tensor:
        try:
            heads, a, b, c = self.get_parameter(key).shape
        except (AttributeError, ValueError):
            return value  # an unexpected key: strict loading reports it
        if tuple(value.shape) != (a * b * c, heads):
            return value  # a shape mismatch: strict loading reports it with both shapes
        table = value.reshape(a, b, c, heads)  # [Δt, Δh, Δw, head] with Δ = query − key
        return table.flip(0, 1, 2).permute(3, 0, 1, 2).contiguous()  # (heads, a, b, c) with Δ = key − query


VIDEO_SWIN_TAXONOMY = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="video",
                               block="transformer")
_PAPER = "Video Swin Transformer (Liu et al. 2022): 3-D shifted windows"
register(Preset("video_swin_tiny_patch244_window877", VideoSwin, VideoSwinSpec(), VIDEO_SWIN_TAXONOMY, img_size=224,
                paper=_PAPER, num_classes=400))
# test variant: 4 frames of 32², tubelet grid (2, 8, 8) then (2, 4, 4); windows (2, 4, 4), shifted in stage 0
register(Preset("video_swin_test", VideoSwin, VideoSwinSpec(num_frames=4, embed_dim=16, depths=(2, 2), heads=(1, 2),
                                                            window=(2, 4, 4), drop_path=0.0),
                VIDEO_SWIN_TAXONOMY, img_size=32, tiny=True, paper="test variant", num_classes=400))
