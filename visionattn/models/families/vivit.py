"""Video Transformers on tubelets (ViViT, Arnab et al. 2021; TimeSformer, Bertasius et al. 2021): the spec, the
:class:`VideoVisionTransformer` backbone, its converters (Hugging Face ``VivitModel`` / ``TimesformerModel``
checkpoints, and an image ViT inflated to video) and its presets.

A clip ``(B, 3, T, H, W)`` becomes tubelet tokens on a ``(T/t, H/p, W/p)`` grid (a ``t × p × p`` Conv3d) plus
learned (one ``T × H × W`` table) or separable (space + time tables) position embeddings. The variants differ only
in the pattern each attention call gets on that grid (:mod:`.video_blocks`):

=============================  =================================================================================
``spatiotemporal`` (model 1)   Global over all tokens and a class token — cost ∝ (T·H·W)²
``factorised_encoder`` (2)     ``depth`` blocks within each frame (``Window((1, H, W))``), then each frame pooled
                               to one token and ``temporal_depth`` blocks Global over the frames
``factorised_self_attention``  in every block: attention within the frame, then across time (``Axial(0)``)
(model 3)
``factorised_dot_product`` (4) in every block: half the heads within the frame, half across time
``divided`` (TimeSformer)      in every block: across time (no class token), then within the frame with a copy of
                               the class token in every frame (averaged back), as Hugging Face's
                               ``TimesformerLayer``
=============================  =================================================================================

Models 2–4 have no class token (the paper's models 3 and 4 have none; model 2 here pools each frame's tokens
instead of a per-frame class token) and classify the mean token; models 1 and TimeSformer classify the class
token. ``forward_features`` gives the final LayerNorm of ``(class token, then the grid tokens in t, h, w raster
order)`` ``(B, P + N, C)``; ``forward_intermediates`` gives maps ``(B, C, T', H', W')`` (the factorised encoder's
temporal blocks: each frame's token at every position of the frame).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers.drop import drop_path_rates
from ...layers.padding import downsample_mask
from ..backbone import Backbone, FeatureInfo, init_linear
from ..registry import Preset, register
from ..sizes import check_multiple, to_pair
from ..taxonomy import Taxonomy
from .video_blocks import (
    DividedSpaceTimeBlock,
    FactorisedDotProductBlock,
    FactorisedSelfAttentionBlock,
    FrameBlock,
    JointSpaceTimeBlock,
    TemporalBlock,
    TubeletEmbed,
    VideoPositionEmbedding,
    VideoState,
)

__all__ = ["VARIANTS", "VIDEO_TAXONOMY", "VideoVisionTransformer", "VivitSpec"]

VARIANTS = ("spatiotemporal", "factorised_encoder", "factorised_self_attention", "factorised_dot_product", "divided")
_CLASS_TOKEN_VARIANTS = ("spatiotemporal", "divided")
TUBELET_INITS = ("central", "inflate")


@dataclass(frozen=True)
class VivitSpec:
    """A video Transformer.

    variant: one of :data:`VARIANTS` (module docstring). num_frames: clip length T the position table is built for
    (other lengths interpolate it). tubelet: ``(t, p, p)``. dim / depth / heads / mlp_ratio: as ViT (``depth`` is
    the spatial depth of the factorised encoder); temporal_depth: the factorised encoder's temporal blocks.
    class_token: None = the variant's default (True for spatiotemporal and divided; the factorised models 2–4 have
    none and pool the mean token). pos_embed: ``'learned'`` (one table over ``T' × H' × W'``), ``'separable'``
    (space + time), ``'none'``. mlp_act: ``'gelu'`` or ``'gelu_tanh'`` (ViViT's JAX GELU, HF ``gelu_fast``).
    drop_path: stochastic depth of the last block (rising linearly over every block). drop_rate: dropout after
    attention / MLP projections and before the head. layer_scale: initial LayerScale (None = off).
    """

    variant: str = "spatiotemporal"
    num_frames: int = 32
    tubelet: tuple[int, int, int] = (2, 16, 16)
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    temporal_depth: int = 4
    class_token: bool | None = None
    pos_embed: str = "learned"
    mlp_act: str = "gelu"
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_path: float = 0.0
    drop_rate: float = 0.0
    layer_scale: float | None = None
    backend: str = "auto"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"VivitSpec.variant must be one of {VARIANTS}, got {self.variant!r}")
        if len(tuple(self.tubelet)) != 3 or min(self.tubelet) < 1:
            raise ValueError(f"VivitSpec.tubelet must be 3 positive ints (t, p, p), got {self.tubelet!r}")
        if min(self.num_frames, self.dim, self.depth, self.heads) < 1 or self.temporal_depth < 0:
            raise ValueError(f"VivitSpec needs num_frames, dim, depth, heads ≥ 1, temporal_depth ≥ 0; got "
                             f"num_frames={self.num_frames}, dim={self.dim}, depth={self.depth}, heads={self.heads}, "
                             f"temporal_depth={self.temporal_depth}")
        if self.dim % self.heads:
            raise ValueError(f"VivitSpec: dim {self.dim} is not divisible by heads {self.heads}")
        if self.variant == "factorised_dot_product" and self.heads % 2:
            raise ValueError(f"VivitSpec: factorised_dot_product splits the heads in half, got heads={self.heads}")
        if self.variant == "factorised_encoder" and self.temporal_depth < 1:
            raise ValueError("VivitSpec: factorised_encoder needs temporal_depth ≥ 1")
        if self.num_frames % self.tubelet[0]:
            raise ValueError(f"VivitSpec: num_frames {self.num_frames} is not a multiple of the tubelet's "
                             f"{self.tubelet[0]} frames")
        if self.class_token and self.variant not in _CLASS_TOKEN_VARIANTS:
            raise ValueError(f"VivitSpec: variant {self.variant!r} has no class token (its attention runs on the "
                             f"(T, H, W) grid; it pools the mean token); class_token=True is for "
                             f"{_CLASS_TOKEN_VARIANTS}")
        if self.pos_embed not in VideoPositionEmbedding.KINDS:
            raise ValueError(f"VivitSpec.pos_embed must be one of {VideoPositionEmbedding.KINDS}, got "
                             f"{self.pos_embed!r}")

    @property
    def uses_class_token(self) -> bool:
        return self.variant in _CLASS_TOKEN_VARIANTS if self.class_token is None else bool(self.class_token)

    @property
    def blocks(self) -> int:
        return self.depth + (self.temporal_depth if self.variant == "factorised_encoder" else 0)


def _make_block(spec: VivitSpec, index: int, drop_path: float) -> nn.Module:
    common = dict(mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias, drop_path=drop_path, proj_drop=spec.drop_rate,
                  layer_scale=spec.layer_scale, norm_eps=spec.norm_eps, backend=spec.backend, mlp_act=spec.mlp_act)
    if spec.variant == "spatiotemporal":
        return JointSpaceTimeBlock(spec.dim, spec.heads, **common)
    if spec.variant == "factorised_encoder":
        if index < spec.depth:
            return FrameBlock(spec.dim, spec.heads, **common)
        return TemporalBlock(spec.dim, spec.heads, pool=index == spec.depth, **common)
    if spec.variant == "factorised_self_attention":
        return FactorisedSelfAttentionBlock(spec.dim, spec.heads, **common)
    if spec.variant == "factorised_dot_product":
        return FactorisedDotProductBlock(spec.dim, spec.heads, **common)
    return DividedSpaceTimeBlock(spec.dim, spec.heads, **common)


class VideoVisionTransformer(Backbone):
    """ViViT (four variants) and TimeSformer: videos ``(B, 3, T, H, W)`` → logits ``(B, num_classes)``.

    T must be a multiple of the tubelet's ``t``, H and W of its ``p`` (``frame_multiple``, ``input_multiple``);
    other sizes than the built ``num_frames × img_size`` interpolate the position tables. A padding mask
    ``(B, T, H, W)`` (clips batched at different lengths / sizes, True = padding) makes all-padding tubelets keys
    that are never attended and fits the position embeddings to each clip's content, so a clip padded at the end
    gives at its own tokens what it gives alone (exact for every variant: tubelets do not overlap and the mean
    pooling of the factorised encoder skips padding).
    """

    input_kind = "video"

    def __init__(self, spec: VivitSpec, num_classes: int = 400, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = to_pair(img_size)
        t, p, q = spec.tubelet
        check_multiple(self.img_size[:1], p, "VideoVisionTransformer", "img_size height", f"tubelet {spec.tubelet}")
        check_multiple(self.img_size[1:], q, "VideoVisionTransformer", "img_size width", f"tubelet {spec.tubelet}")
        self.num_frames, self.frame_multiple = spec.num_frames, t
        self.input_multiple = math.lcm(p, q)
        self.grid = (spec.num_frames // t, self.img_size[0] // p, self.img_size[1] // q)  # (T', H', W') built
        C = self.num_features = self.embed_dim = spec.dim
        self.num_classes = num_classes
        self.num_prefix_tokens = int(spec.uses_class_token)

        self.patch_embed = TubeletEmbed(spec.tubelet, C)
        self.pos_embed = VideoPositionEmbedding(self.grid, C, spec.pos_embed)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if spec.uses_class_token else None
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, C)) if spec.uses_class_token and spec.pos_embed != "none" \
            else None
        rates = drop_path_rates(spec.drop_path, spec.blocks)
        self.stages = nn.ModuleList(_make_block(spec, i, rate) for i, rate in enumerate(rates))
        self.feature_info = [FeatureInfo(C, p, f"stages.{i}") for i in range(spec.blocks)]
        self.norm = nn.LayerNorm(C, eps=spec.norm_eps)
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.head: nn.Module = nn.Identity()
        self._last_grid = self.grid
        self.stages.apply(init_linear)
        for param in (self.cls_token, self.cls_pos):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0, got {num_classes}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """The class token and the position tables."""
        return {n for n, _ in self.named_parameters() if n in ("cls_token", "cls_pos") or n.startswith("pos_embed.")}

    # -- Backbone contract ----------------------------------------------------------------------------
    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> VideoState:
        """Videos ``(B, 3, T, H, W)`` → ``(class token (B, 1, C) or None, tokens (B, T', H', W', C))``."""
        x = self.patch_embed(x)  # (B, T', H', W', C)
        token_mask = None if padding_mask is None else downsample_mask(padding_mask, self.spec.tubelet)
        x = self.pos_embed(x, padding_mask=token_mask)  # (B, T', H', W', C)
        self._last_grid = tuple(x.shape[1:4])
        if self.cls_token is None:
            return None, x
        prefix = self.cls_token if self.cls_pos is None else self.cls_token + self.cls_pos  # (1, 1, C)
        return prefix.expand(x.shape[0], -1, -1).to(x.dtype), x

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        """Every block gets the tubelet mask ``(B, T', H', W')`` (a tubelet is padding iff all its pixels are)."""
        return [downsample_mask(padding_mask, self.spec.tubelet)] * len(self.stages)

    def stage_map(self, state: VideoState, index: int) -> Tensor:
        """``(B, C, T', H', W')``; the factorised encoder's temporal blocks hold one token per frame, shown at every
        position of its frame (the map is the frame token broadcast over the last tubelet grid)."""
        x = state[1]
        if x.ndim == 3:
            h, w = self._last_grid[1:]
            return x.transpose(1, 2)[..., None, None].expand(-1, -1, -1, h, w)  # (B, C, T', H', W')
        return x.permute(0, 4, 1, 2, 3)  # (B, C, T', H', W')

    def forward_norm(self, state: VideoState) -> Tensor:
        """Final LayerNorm of ``(class token, tokens in raster order)`` → ``(B, P + N, C)``."""
        prefix, x = state
        tokens = x.flatten(1, -2)  # (B, N, C)
        if prefix is not None:
            tokens = torch.cat([prefix, tokens], dim=1)  # (B, P + N, C)
        return self.norm(tokens)

    def pool(self, features: Tensor) -> Tensor:
        """``(B, P + N, C)`` → ``(B, C)``: the class token, or the mean of the tokens (no class token)."""
        return features[:, 0] if self.num_prefix_tokens else features.mean(dim=1)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        pooled = self.head_drop(self.pool(features))  # (B, C)
        return pooled if pre_logits else self.head(pooled)

    # -- checkpoint import ----------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A Hugging Face ``VivitModel`` / ``VivitForVideoClassification`` (spatiotemporal) or ``TimesformerModel``
        / ``TimesformerForVideoClassification`` (divided) state dict → ours. Other keys pass through, so the
        loader reports them (missing / unexpected / mis-shaped)."""
        sd = {re.sub(r"^(vivit|timesformer)\.", "", k): v for k, v in state_dict.items()}
        if "embeddings.time_embeddings" in sd:
            return _from_hf_timesformer(sd, self.grid)
        if "embeddings.patch_embeddings.projection.weight" in sd:
            return _from_hf_vivit(sd, self.grid)
        return dict(state_dict)

    def image_vit_state(self, image_state: dict[str, Tensor], tubelet_init: str = "central") -> dict[str, Tensor]:
        """Our keys filled from an image ViT state dict (ours or timm's / DINO's names; class token, learned
        position table, patch embedding, blocks, final norm), ViViT's initialisation:

        * tubelet filters ``(C, 3, p, p)`` → ``(C, 3, t, p, p)``: ``'central'`` puts the image filter at the
          central frame ``t // 2`` and zeros elsewhere; ``'inflate'`` repeats it over the ``t`` frames divided by
          ``t`` (both give the image filter's response on a static clip);
        * position embeddings: the image grid (resized, bicubic, if the grids differ) repeated over the T' frames
          (``'learned'``) or used as the spatial table with a zero temporal table (``'separable'``);
        * every block's spatial attention, norms and MLP from the image block of the same index; the temporal
          parts that would change the image model's output start at zero (model 3's ``attn_time.proj``,
          TimeSformer's ``temporal_fc``), the factorised encoder's temporal blocks stay random, its
          ``frame_norm`` takes the image model's final norm.
        What is not filled (the head, new temporal parts) keeps its initialisation."""
        if tubelet_init not in TUBELET_INITS:
            raise ValueError(f"tubelet_init must be one of {TUBELET_INITS}, got {tubelet_init!r}")
        sd = _image_vit_keys(image_state)
        w = sd.get("patch_embed.proj.weight")
        if w is None or w.ndim != 4 or w.shape[0] != self.embed_dim or tuple(w.shape[2:]) != self.spec.tubelet[1:]:
            got = None if w is None else tuple(w.shape)
            raise ValueError(f"image ViT: expected patch_embed.proj.weight ({self.embed_dim}, 3, "
                             f"{self.spec.tubelet[1]}, {self.spec.tubelet[2]}) for {type(self).__name__} with "
                             f"tubelet {self.spec.tubelet}, got {got}")
        depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"stages\.(\d+)\.", k))), default=-1)
        if depth != self.spec.depth:
            raise ValueError(f"image ViT has {depth} blocks, the video model {self.spec.depth} spatial blocks; "
                             f"expected equal depths")
        t = self.spec.tubelet[0]
        out = {"patch_embed.proj.bias": sd["patch_embed.proj.bias"]}
        if tubelet_init == "central":
            out["patch_embed.proj.weight"] = F.pad(w[:, :, None], (0, 0, 0, 0, t // 2, t - 1 - t // 2))
        else:
            out["patch_embed.proj.weight"] = w[:, :, None].repeat(1, 1, t, 1, 1) / t  # (C, 3, t, p, p)
        grid = sd.get("pos_embed.weight")  # (1, h, w, C)
        if grid is not None and self.spec.pos_embed != "none":
            if tuple(grid.shape[1:3]) != self.grid[1:]:
                grid = F.interpolate(grid.permute(0, 3, 1, 2).float(), size=self.grid[1:], mode="bicubic",
                                     align_corners=False, antialias=True).permute(0, 2, 3, 1).to(grid.dtype)
            if self.spec.pos_embed == "learned":
                out["pos_embed.grid.weight"] = grid[:, None].expand(1, self.grid[0], *grid.shape[1:]).clone()
            else:
                out["pos_embed.space.weight"] = grid
                out["pos_embed.time.weight"] = grid.new_zeros(1, self.grid[0], grid.shape[-1])
        if self.cls_token is not None and "cls_token" in sd:
            out["cls_token"] = sd["cls_token"]
            if self.cls_pos is not None and "prefix_pos" in sd:
                out["cls_pos"] = sd["prefix_pos"][:, :1]
        for key, value in sd.items():
            if key.startswith("stages."):
                out[key] = value
        norm = "frame_norm" if self.spec.variant == "factorised_encoder" else "norm"
        for part in ("weight", "bias"):
            if f"norm.{part}" in sd:
                key = f"stages.{self.spec.depth}.frame_norm.{part}" if norm == "frame_norm" else f"norm.{part}"
                out[key] = sd[f"norm.{part}"]
        for i in range(self.spec.depth):
            zero = {"factorised_self_attention": "attn_time.proj", "divided": "temporal_fc"}.get(self.spec.variant)
            if zero:
                for part in ("weight", "bias"):
                    out[f"stages.{i}.{zero}.{part}"] = torch.zeros_like(self.get_parameter(f"stages.{i}.{zero}.{part}"))
        return out

    def load_image_vit(self, image_state: dict[str, Tensor], tubelet_init: str = "central") -> list[str]:
        """Fill this model from an image ViT (:meth:`image_vit_state`); returns the parameter names left at their
        initialisation. A key of the image model that fits nothing here, or a wrong shape, is a ``ValueError``."""
        state = self.image_vit_state(image_state, tubelet_init)
        own = dict(self.named_parameters())
        unknown = sorted(k for k in state if k not in own)
        wrong = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(v.shape)}" for k, v in state.items()
                 if k in own and own[k].shape != v.shape]
        if unknown or wrong:
            raise ValueError(f"image ViT → {type(self).__name__}: keys with no place here {unknown[:10]}; "
                             f"shape mismatches {wrong[:10]}")
        with torch.no_grad():
            for key, value in state.items():
                own[key].copy_(value)
        return sorted(k for k in own if k not in state)


# -- converters -------------------------------------------------------------------------------------------------
def _image_vit_keys(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm / DINO / our ViT keys → ours (``blocks.i`` → ``stages.i``; ``pos_embed (1, prefix + n², C)`` →
    ``prefix_pos`` + ``pos_embed.weight (1, n, n, C)``)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("blocks."):
            out["stages." + key[len("blocks."):]] = value
        elif key == "pos_embed" and value.ndim == 3:
            n = value.shape[1]
            prefix = next((p for p in (1, 0, 2) if n > p and math.isqrt(n - p) ** 2 == n - p), None)
            if prefix is None:  # not prefix tokens + a square grid: left for the loader to report
                out[key] = value
                continue
            side = math.isqrt(n - prefix)
            out["prefix_pos"] = value[:, :prefix]
            out["pos_embed.weight"] = value[:, prefix:].reshape(1, side, side, value.shape[-1])
        else:
            out[key] = value
    return out


_HF_BLOCK = {"layernorm_before": "norm1", "layernorm_after": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
             "attention.o_proj": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
             "attention.attention.qkv": "attn.qkv", "attention.output.dense": "attn.proj",
             "temporal_attention.attention.qkv": "attn_time.qkv", "temporal_attention.output.dense": "attn_time.proj",
             "temporal_layernorm": "norm_time", "temporal_dense": "temporal_fc"}


def _block_key(prefix: str, key: str) -> str | None:
    m = re.match(rf"^{prefix}\.(\d+)\.(.+)\.(weight|bias)$", key)
    if not m or m.group(2) not in _HF_BLOCK:
        return None
    return f"stages.{m.group(1)}.{_HF_BLOCK[m.group(2)]}.{m.group(3)}"


def _split_cls_pos(value: Tensor, grid: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    return value[:, :1], value[:, 1:].reshape(1, *grid, value.shape[-1])


def _from_hf_vivit(sd: dict[str, Tensor], grid: tuple[int, int, int]) -> dict[str, Tensor]:
    """Hugging Face ViViT (transformers 5: ``layers.i.attention.{q,k,v,o}_proj``) → ours; the pooler is dropped
    (our head reads the normalised class token, as ``VivitForVideoClassification``)."""
    out, qkv = {}, {}
    for key, value in sd.items():
        if key.startswith("pooler."):
            continue
        m = re.match(r"^layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$", key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        if key == "embeddings.cls_token":
            out["cls_token"] = value
        elif key == "embeddings.position_embeddings":
            out["cls_pos"], out["pos_embed.grid.weight"] = _split_cls_pos(value, grid)
        elif key.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("classifier."):
            out["head." + key.rsplit(".", 1)[1]] = value
        else:
            out[_block_key("layers", key) or key] = value
    for (i, part), parts in qkv.items():
        out[f"stages.{i}.attn.qkv.{part}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _from_hf_timesformer(sd: dict[str, Tensor], grid: tuple[int, int, int]) -> dict[str, Tensor]:
    """Hugging Face TimeSformer (``divided_space_time``) → ours: the 2-D patch embedding becomes a 1-frame tubelet,
    ``position_embeddings (1, 1 + H'W', C)`` the class position + the spatial table, ``time_embeddings`` the
    temporal table."""
    out = {}
    for key, value in sd.items():
        if key == "embeddings.cls_token":
            out["cls_token"] = value
        elif key == "embeddings.position_embeddings":
            out["cls_pos"], out["pos_embed.space.weight"] = _split_cls_pos(value, grid[1:])
        elif key == "embeddings.time_embeddings":
            out["pos_embed.time.weight"] = value
        elif key == "embeddings.patch_embeddings.projection.weight":
            out["patch_embed.proj.weight"] = value[:, :, None]  # (C, 3, 1, p, p)
        elif key == "embeddings.patch_embeddings.projection.bias":
            out["patch_embed.proj.bias"] = value
        elif key.startswith("layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("classifier."):
            out["head." + key.rsplit(".", 1)[1]] = value
        else:
            out[_block_key("encoder.layer", key) or key] = value
    return out


# -- presets ----------------------------------------------------------------------------------------------------
VIDEO_TAXONOMY = Taxonomy(purity="attention", form="softmax", scales="single", geometry="video", block="transformer")
_PAPERS = {
    "spatiotemporal": "ViViT model 1, spatio-temporal attention (Arnab et al. 2021)",
    "factorised_encoder": "ViViT model 2, factorised encoder (Arnab et al. 2021)",
    "factorised_self_attention": "ViViT model 3, factorised self-attention (Arnab et al. 2021)",
    "factorised_dot_product": "ViViT model 4, factorised dot-product attention (Arnab et al. 2021)",
    "divided": "TimeSformer, divided space-time attention (Bertasius et al. 2021)",
}

for _variant in VARIANTS[:4]:
    # ViViT-B, 32 frames of 224², tubelet 2×16×16 (the paper's model comparison, Table 2); its GELU is JAX's. The
    # factorised encoder's spatial transformer is a ViT run per frame: a spatial table shared by the frames (+ time)
    _pos = "separable" if _variant == "factorised_encoder" else "learned"
    register(Preset(f"vivit_b16x2_{_variant}", VideoVisionTransformer,
                    VivitSpec(variant=_variant, mlp_act="gelu_tanh", pos_embed=_pos), VIDEO_TAXONOMY, img_size=224,
                    paper=_PAPERS[_variant], num_classes=400))
    register(Preset(f"vivit_{_variant}_test", VideoVisionTransformer,
                    VivitSpec(variant=_variant, num_frames=4, tubelet=(2, 8, 8), dim=32, depth=2, heads=2,
                              temporal_depth=1), VIDEO_TAXONOMY, img_size=32, tiny=True, paper="test variant",
                    num_classes=400))
register(Preset("timesformer_base_patch16_224", VideoVisionTransformer,
                VivitSpec(variant="divided", num_frames=8, tubelet=(1, 16, 16), pos_embed="separable"),
                VIDEO_TAXONOMY, img_size=224, paper=_PAPERS["divided"], num_classes=400))
register(Preset("timesformer_test", VideoVisionTransformer,
                VivitSpec(variant="divided", num_frames=4, tubelet=(1, 8, 8), dim=32, depth=2, heads=2,
                          pos_embed="separable"), VIDEO_TAXONOMY, img_size=32, tiny=True, paper="test variant",
                num_classes=400))
