"""Hybrid CNN–Transformer (ViT paper's "R50+ViT" style): ResNet stem and stages 1–3 convolve the high
resolutions (linear cost), then a 1×1 projection turns the stride-16 map into tokens for global attention
(quadratic, but over few tokens) — the tutorial's "Hybrid CNN-Transformers" slide. The spec, the
:class:`HybridViT` backbone and its presets.

Stages: ``0..n-1`` are bottleneck stages (NCHW ``(B, C_i, H/4·2^i, W/4·2^i)``); the last stage is a
:class:`TokenStage` whose state is ``(cls (B, 1, dim), tokens (B, h, w, dim))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...layers.absolute import LearnedPositionEmbedding
from ...layers.bottleneck import CONV3X3
from ...layers.drop import drop_path_rates
from ...layers.padding import downsample_mask
from ...layers.stems import STEM_KINDS, make_stem
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Global
from ..backbone import Backbone, FeatureInfo
from ..registry import Preset, register
from ..sizes import ceil_grid, to_pair
from ..taxonomy import Taxonomy
from .resnet import TEST_WIDTHS, ResNetSpec, build_stages


@dataclass(frozen=True)
class HybridViTSpec:
    """Conv part: ``depths``/``widths``/``stem``/``stem_width`` as :class:`ResNetSpec` (3×3 conv mixers).
    Transformer part: ``dim``, ``depth`` blocks, ``heads``, ``mlp_ratio``; a class token and a learned
    absolute position embedding (interpolated for other input sizes). ``drop_path`` rises linearly over the
    conv blocks then the transformer blocks."""

    depths: tuple[int, ...] = (2, 2, 2)
    widths: tuple[int, ...] = (256, 512, 1024)
    stem: str = "resnet"
    stem_width: int = 64
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0
    drop_rate: float = 0.0
    backend: str = "auto"

    def __post_init__(self):
        if self.stem not in STEM_KINDS:
            raise ValueError(f"HybridViTSpec.stem must be one of {STEM_KINDS}, got {self.stem!r}")
        if self.depth < 1 or self.dim % self.heads:
            raise ValueError(f"HybridViTSpec needs depth ≥ 1 and dim divisible by heads; got depth={self.depth}, "
                             f"dim={self.dim}, heads={self.heads}")

    def conv_spec(self) -> ResNetSpec:
        """The convolutional part as a :class:`ResNetSpec` (its drop-path rates come from :meth:`rates`)."""
        return ResNetSpec(depths=self.depths, widths=self.widths, mixers=(CONV3X3,) * len(self.depths),
                          stem=self.stem, stem_width=self.stem_width, drop_path=self.drop_path, backend=self.backend)

    def rates(self) -> tuple[list[float], list[float]]:
        """Drop-path rates of the conv blocks and of the Transformer blocks: one rule over both, in order."""
        rates = drop_path_rates(self.drop_path, sum(self.depths) + self.depth)
        return rates[: sum(self.depths)], rates[sum(self.depths):]


class TokenStage(nn.Module):
    """x ``(B, in_chs, h, w)`` → 1×1 projection → tokens ``(B, h, w, dim)`` + learned position embedding →
    prepend the class token → ``depth`` pre-norm Transformer blocks with ``Global()`` attention over the
    sequence ``(B, 1 + h·w, dim)`` → ``(cls (B, 1, dim), tokens (B, h, w, dim))``."""

    def __init__(self, in_chs: int, spec: HybridViTSpec, grid: tuple[int, int], rates: list[float]):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, spec.dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, spec.dim))
        nn.init.trunc_normal_(self.cls_pos, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.pos_embed = LearnedPositionEmbedding(grid, spec.dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(spec.dim, spec.heads, Global(), mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias,
                             drop_path=r, backend=spec.backend, dims=1)
            for r in rates
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x ``(B, in_chs, h, w)``; key_padding_mask ``(B, h, w)`` bool (True = padding): never attended, and the
        position embedding is fitted to each image's content extent."""
        tokens = self.pos_embed(self.proj(x).permute(0, 2, 3, 1), padding_mask=key_padding_mask)  # (B, h, w, dim)
        B, h, w, dim = tokens.shape
        cls = (self.cls_token + self.cls_pos).expand(B, -1, -1)  # (B, 1, dim)
        seq = torch.cat([cls, tokens.reshape(B, h * w, dim)], dim=1)  # (B, 1 + h·w, dim)
        mask = None
        if key_padding_mask is not None:
            cls_keep = key_padding_mask.new_zeros(B, 1)  # the class token is never padding
            mask = torch.cat([cls_keep, key_padding_mask.reshape(B, h * w)], dim=1)  # (B, 1 + h·w)
        for block in self.blocks:
            seq = block(seq, key_padding_mask=mask)  # (B, 1 + h·w, dim)
        return seq[:, :1], seq[:, 1:].reshape(B, h, w, dim)


class HybridViT(Backbone):
    """ResNet stages then a ViT: ``forward(x (B, 3, H, W))`` → logits; ``forward_features`` → normalised
    sequence ``(B, 1 + (H/r)(W/r), dim)`` with ``r = 4 · 2^(n-1)`` (16 for three conv stages); the head reads
    the class token. ``feature_info``: the conv stages, then the token stage at the same reduction."""

    def __init__(self, spec: HybridViTSpec, num_classes: int = 1000, img_size=224):
        super().__init__()
        self.spec, self.img_size = spec, to_pair(img_size)
        conv = spec.conv_spec()
        conv_rates, vit_rates = spec.rates()
        self.stem = make_stem(conv.stem, conv.stem_width)
        self.stages, self.feature_info = build_stages(conv, conv.stem_width, self.img_size, rates=conv_rates)
        reduction = self.feature_info[-1].reduction
        self.stages.append(TokenStage(spec.widths[-1], spec, ceil_grid(self.img_size, reduction), vit_rates))
        self.feature_info.append(FeatureInfo(spec.dim, reduction, f"stages.{len(spec.depths)}"))
        self.norm = nn.LayerNorm(spec.dim, eps=1e-6)
        self.num_features = spec.dim
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.num_classes = num_classes
        self.head = nn.Linear(spec.dim, num_classes) if num_classes else nn.Identity()

    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.stem(x)  # (B, stem_width, H/4, W/4)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor | None]:
        """Only the token stage attends: it gets the mask on its grid (the last conv stage's output)."""
        return [None] * (len(self.stages) - 1) + [downsample_mask(padding_mask, self.feature_info[-1].reduction)]

    def stage_map(self, state, index: int) -> Tensor:
        if isinstance(state, tuple):  # the token stage: (cls, tokens (B, h, w, dim))
            return state[1].permute(0, 3, 1, 2)  # (B, dim, h, w)
        return state

    def forward_norm(self, state) -> Tensor:
        cls, tokens = state
        B, h, w, dim = tokens.shape
        return self.norm(torch.cat([cls, tokens.reshape(B, h * w, dim)], dim=1))  # (B, 1 + h·w, dim)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """features ``(B, 1 + N, dim)`` → class token ``(B, dim)`` (``pre_logits``) or logits."""
        x = self.head_drop(features[:, 0])  # (B, dim)
        return x if pre_logits else self.head(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def build_hybrid_vit(spec: HybridViTSpec, num_classes: int = 1000, img_size=224) -> HybridViT:
    """Registry builder: ``builder(spec, num_classes=, img_size=)``."""
    return HybridViT(spec, num_classes=num_classes, img_size=img_size)


# -- presets ---------------------------------------------------------------------------------------------
HYBRID_VIT = Taxonomy(purity="hybrid", form="softmax", scales="single", geometry="sequence", block="transformer")

register(Preset("r26_vit", build_hybrid_vit, HybridViTSpec(), HYBRID_VIT,
                paper="R26+ViT-S/16 hybrid: ResNet-26 stages 1-3 then 12 ViT-S blocks on stride-16 tokens "
                      "(Dosovitskiy et al. 2021, hybrid)"))
register(Preset("r26_vit_test", build_hybrid_vit,
                HybridViTSpec(depths=(1, 1, 1), widths=TEST_WIDTHS[:3], stem_width=16, dim=32, depth=2, heads=2),
                HYBRID_VIT, img_size=32, tiny=True, paper="tiny R26+ViT hybrid for tests"))

__all__ = ["HYBRID_VIT", "HybridViT", "HybridViTSpec", "TokenStage", "build_hybrid_vit"]
