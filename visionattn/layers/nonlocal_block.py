"""The non-local block (Wang et al. 2018, "Non-local Neural Networks"), embedded-Gaussian form.

``z = x + BN(W_z · softmax(θ(x)ᵀ φ(x)) g(x))`` over all positions: exactly global self-attention, so it is
:class:`visionattn.layers.Attention` with ``Global()`` — θ, φ, g are the fused ``qkv`` projection (the 1×1
convs of the paper, as a Linear on channels-last tokens) and W_z is its output ``proj``. The BN after W_z starts
with γ = 0, so an inserted block is the identity at initialisation (the paper's recipe for inserting blocks
into a pretrained ResNet).

Differences from the paper: logits are scaled by ``inner ** -0.5`` (the operator's softmax attention; the
paper's embedded Gaussian is unscaled, which only changes the softmax temperature the projections learn), and
φ/g are not max-pooled (the paper's optional subsampling trick).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..ops.patterns import Global
from .attention import Attention


class NonLocalBlock(nn.Module):
    """x ``(B, dim, H, W)`` (NCHW) → ``(B, dim, H, W)``: ``x + BN(Attention_Global(x))``.

    dim: channels. inner: the θ/φ/g width (paper: ``dim // 2``). heads: 1 in the paper.
    """

    def __init__(self, dim: int, inner: int | None = None, heads: int = 1, backend: str = "auto"):
        super().__init__()
        inner = inner or dim // 2
        if inner < 1 or inner % heads:
            raise ValueError(f"NonLocalBlock inner width must be a positive multiple of heads={heads}, got {inner}")
        self.attn = Attention(dim, heads, Global(), head_dim=inner // heads, backend=backend, dims=2)
        self.bn = nn.BatchNorm2d(dim)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, dim, H, W)``; key_padding_mask ``(B, H, W)`` bool (True = padding, never attended)."""
        y = self.attn(x.permute(0, 2, 3, 1), key_padding_mask=key_padding_mask)  # (B, H, W, dim) channels-last
        return x + self.bn(y.permute(0, 3, 1, 2))  # (B, dim, H, W)


__all__ = ["NonLocalBlock"]
