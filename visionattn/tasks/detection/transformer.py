"""DETR's transformer (post-norm, Carion et al. 2020) with :class:`visionattn.layers.Attention` for every attention.

Encoder layer, over the projected feature map as a 2D grid of tokens ``(B, H, W, d)`` (Global pattern, padded
positions masked as keys)::

    x = LN(x + Drop(SelfAttn(q = k = x + pos, v = x)))
    x = LN(x + Drop(FFN(x)))

Decoder layer, over the ``N`` object queries ``(B, N, d)`` (``tgt`` starts at zeros; ``query_pos`` is the learned
query embedding) and the encoder memory flattened to ``(B, HW, d)``::

    t = LN(t + Drop(SelfAttn(q = k = t + query_pos, v = t)))
    t = LN(t + Drop(CrossAttn(q = t + query_pos, k = memory + pos, v = memory, key padding = mask)))
    t = LN(t + Drop(FFN(t)))

The decoder returns every layer's output through the shared final LayerNorm (the auxiliary losses' inputs); the
next layer reads the un-normalised output, as in DETR (``return_intermediate_dec``).
"""

from __future__ import annotations

import torch
from timm.layers import Mlp
from torch import Tensor, nn

from ...layers import Attention
from ...ops import Global

__all__ = ["EncoderLayer", "DecoderLayer", "DetrTransformer"]


def _ffn(dim: int, ffn_dim: int, dropout: float) -> Mlp:
    """``fc2(Drop(ReLU(fc1(x))))`` (the residual's dropout is the layer's)."""
    return Mlp(dim, ffn_dim, act_layer=nn.ReLU, drop=(dropout, 0.0))


class EncoderLayer(nn.Module):
    """One encoder layer over ``x`` ``(B, H, W, dim)``; ``pos`` ``(B, H, W, dim)``; ``mask`` ``(B, H, W)`` bool."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, backend: str = "auto"):
        super().__init__()
        self.self_attn = Attention(dim, heads, Global(), backend=backend)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = _ffn(dim, ffn_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, mask: Tensor | None) -> Tensor:
        a = self.self_attn(x, key_padding_mask=mask, query_pos=pos, key_pos=pos)  # (B, H, W, dim)
        x = self.norm1(x + self.drop1(a))
        return self.norm2(x + self.drop2(self.mlp(x)))  # (B, H, W, dim)


class DecoderLayer(nn.Module):
    """One decoder layer: ``tgt`` ``(B, N, dim)``, ``memory`` ``(B, L, dim)`` with ``pos`` ``(B, L, dim)`` and key
    ``mask`` ``(B, L)``, ``query_pos`` ``(B or 1, N, dim)``."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, backend: str = "auto"):
        super().__init__()
        self.self_attn = Attention(dim, heads, Global(), backend=backend)
        self.cross_attn = Attention(dim, heads, Global(), cross=True, backend=backend)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = _ffn(dim, ffn_dim, dropout)
        self.drop1, self.drop2, self.drop3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor, mask: Tensor | None) -> Tensor:
        a = self.self_attn(tgt, query_pos=query_pos, key_pos=query_pos)  # (B, N, dim)
        tgt = self.norm1(tgt + self.drop1(a))
        a = self.cross_attn(tgt, memory, key_padding_mask=mask, query_pos=query_pos, key_pos=pos)  # (B, N, dim)
        tgt = self.norm2(tgt + self.drop2(a))
        return self.norm3(tgt + self.drop3(self.mlp(tgt)))  # (B, N, dim)


class DetrTransformer(nn.Module):
    """Encoder stack + decoder stack + the decoder's final LayerNorm.

    ``forward(src (B, H, W, dim), mask (B, H, W) bool | None, query_embed (N, dim), pos (B, H, W, dim))`` →
    ``(hs, memory)``: ``hs`` ``(L_dec, B, N, dim)`` every decoder layer's output after the final norm, ``memory``
    ``(B, H, W, dim)`` the encoder output."""

    def __init__(self, dim: int = 256, heads: int = 8, enc_layers: int = 6, dec_layers: int = 6, ffn_dim: int = 2048,
                 dropout: float = 0.1, backend: str = "auto"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"DETR transformer: hidden_dim {dim} must be divisible by heads {heads}")
        if enc_layers < 0 or dec_layers < 1:
            raise ValueError(f"DETR transformer: expected enc_layers >= 0 and dec_layers >= 1, got {enc_layers}, "
                             f"{dec_layers}")
        self.dim, self.heads = dim, heads
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn_dim, dropout, backend) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout, backend) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # DETR's init: Xavier-uniform for every weight matrix of the transformer
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor | None, query_embed: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        B, H, W, C = src.shape
        memory = src
        for layer in self.encoder:
            memory = layer(memory, pos, mask)  # (B, H, W, C)
        flat_memory = memory.reshape(B, H * W, C)  # (B, HW, C)
        flat_pos = pos.reshape(B, H * W, C)
        flat_mask = None if mask is None else mask.reshape(B, H * W)  # (B, HW)
        query_pos = query_embed[None].expand(B, -1, -1)  # (B, N, C)
        tgt = query_pos.new_zeros(query_pos.shape)  # (B, N, C)
        outputs = []
        for layer in self.decoder:
            tgt = layer(tgt, flat_memory, flat_pos, query_pos, flat_mask)
            outputs.append(self.decoder_norm(tgt))
        return torch.stack(outputs), memory  # (L, B, N, C), (B, H, W, C)
