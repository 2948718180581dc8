"""DETR's panoptic head (Carion et al. 2020, §4.4): per-query attention maps over the encoder memory, and an
FPN-style convolutional head that turns them into mask logits with the backbone's finer feature maps.

:class:`AttentionMap` gives, for each decoder output, its multi-head attention logits over the encoder memory,
normalised as DETR does (see its docstring); no values are mixed. :class:`MaskHead` is DETR's
``MaskHeadSmallConv``: two conv-GN-ReLU blocks at the memory's stride, then three fusions (1×1 adapter of a
finer backbone map + nearest upsampling, conv-GN-ReLU), then a 3×3 conv to one logit per pixel at the finest map's
stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionMap", "MaskHead", "ConvNormAct"]


class AttentionMap(nn.Module):
    """``forward(queries (B, N, dim), memory (B, H, W, dim), mask (B, H, W) bool | None)`` → attention maps
    ``(B, N, heads, H, W)``: the logits ``(W_q q)·(W_k m) / sqrt(dim / heads)`` of each query against each unpadded
    memory position, per head, normalised by one softmax per query over heads *and* positions together.

    That joint normalisation is DETR's ``MHAttentionMap`` as published (its softmax runs over ``weights.flatten(2)``
    of a ``(B, N, heads, H, W)`` tensor; Hugging Face's ``DetrMHAttentionMap`` does the same), so the heads compete
    for each query's mass. It is therefore not the per-head attention of ``visionattn.ops`` (whose probabilities
    sum to 1 per head) and is written out here; padded positions get 0."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"AttentionMap: dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        for layer in (self.q, self.k):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, queries: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        B, N, C = queries.shape
        _, H, W, _ = memory.shape
        h, d = self.heads, C // self.heads
        q = self.q(queries).reshape(B, N, h, d) * d ** -0.5  # (B, N, h, d)
        k = self.k(memory).reshape(B, H, W, h, d)  # (B, H, W, h, d)
        logits = torch.einsum("bnhc,byxhc->bnhyx", q.float(), k.float())  # (B, N, h, H, W)
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None], float("-inf"))
        return logits.flatten(2).softmax(-1).view(B, N, h, H, W)  # one softmax over (h, H, W) per query


class ConvNormAct(nn.Sequential):
    """3×3 conv → GroupNorm (``min(8, out)`` groups) → ReLU; ``(B, in, H, W)`` → ``(B, out, H, W)``."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        groups = min(8, out_chs)
        if out_chs % groups:
            raise ValueError(f"ConvNormAct: {out_chs} channels do not split into {groups} GroupNorm groups")
        self.conv = nn.Conv2d(in_chs, out_chs, 3, padding=1)
        self.norm = nn.GroupNorm(groups, out_chs)
        self.act = nn.ReLU()


class MaskHead(nn.Module):
    """DETR's mask head. ``dim``: channels of the projected memory plus the attention heads; ``fpn_dims``: channels
    of the finer backbone maps, coarse to fine (DETR: three, strides 16, 8, 4 under a stride-32 memory; a backbone
    read at an earlier stage has fewer to give, and the head then fuses those); ``context_dim``: the transformer
    width (widths ``context_dim // 2, // 4, // 8, // 16`` after the first block, one per fusion).

    ``forward(features (B, C, H, W), attn (B, N, heads, H, W), fpns [maps (B, C_j, H_j, W_j)])`` → mask logits
    ``(B, N, H_f, W_f)`` at the finest map's size."""

    def __init__(self, dim: int, fpn_dims: list[int], context_dim: int):
        super().__init__()
        if not 1 <= len(fpn_dims) <= 3:
            raise ValueError(f"MaskHead: expected 1 to 3 FPN maps (coarse to fine), got channels {fpn_dims}")
        n = len(fpn_dims)
        widths = [dim] + [context_dim // 2 ** k for k in range(1, n + 2)]  # dim, c/2, c/4, ... one more per fusion
        if widths[-1] < 1:
            raise ValueError(f"MaskHead: context_dim {context_dim} is too small (needs >= {2 ** (n + 1)})")
        ins, outs = [dim, *widths[:-1]], widths  # blocks: dim→dim, dim→c/2, c/2→c/4, ... (2 + n blocks)
        self.blocks = nn.ModuleList(ConvNormAct(i, o) for i, o in zip(ins, outs, strict=True))
        self.adapters = nn.ModuleList(nn.Conv2d(c, widths[1 + j], 1) for j, c in enumerate(fpn_dims))
        self.out = nn.Conv2d(widths[-1], 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)

    def forward(self, features: Tensor, attn: Tensor, fpns: list[Tensor]) -> Tensor:
        B, N = attn.shape[:2]
        x = torch.cat([features.repeat_interleave(N, dim=0),  # (B·N, C, H, W)
                       attn.flatten(0, 1).to(features.dtype)], dim=1)  # (B·N, C + heads, H, W)
        x = self.blocks[1](self.blocks[0](x))  # (B·N, context/2, H, W)
        for adapter, block, fpn in zip(self.adapters, self.blocks[2:], fpns, strict=True):
            f = adapter(fpn).repeat_interleave(N, dim=0)  # (B·N, c_j, H_j, W_j)
            x = block(f + F.interpolate(x, size=f.shape[-2:], mode="nearest"))
        x = self.out(x)  # (B·N, 1, H_3, W_3)
        return x.view(B, N, *x.shape[-2:])
