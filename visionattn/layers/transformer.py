"""The Transformer block (pre-norm), over channels-last tokens of any grid: the block of ViT, DeiT, Swin,
CoAtNet's transformer stages and the hybrids. Its mixer is :class:`visionattn.layers.Attention`."""

from __future__ import annotations

from timm.layers import DropPath, LayerScale, Mlp, get_act_layer
from torch import Tensor, nn

from ..ops.patterns import Global, Pattern
from .attention import Attention


class TransformerBlock(nn.Module):
    """x ``(B, *grid, dim)`` → ``(B, *grid, dim)``:
    ``x + DropPath(LS(Attention(LN(x))))`` then ``x + DropPath(LS(Mlp(LN(x))))``.

    pattern/position/form/grid_size/backend/resize_position go to :class:`Attention`. ``layer_scale``: initial
    value of CaiT-style per-channel scales (None = off). ``mlp_ratio``: hidden = ``dim * mlp_ratio``. ``norm_eps``:
    LayerNorm epsilon (1e-6 for ViT/DeiT, 1e-5 for Swin, as in their checkpoints). ``act_layer``: the MLP's
    activation, a module class or a timm name (``"gelu"``; ``"quick_gelu"`` for OpenAI CLIP checkpoints).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        pattern: Pattern | None = None,
        position: str = "none",
        form: str = "softmax",
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
        layer_scale: float | None = None,
        norm_eps: float = 1e-6,
        grid_size: tuple[int, ...] | None = None,
        backend: str = "auto",
        dims: int | None = None,
        resize_position: bool = False,
        act_layer: type[nn.Module] | str = nn.GELU,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, pattern or Global(), position=position, form=form, qkv_bias=qkv_bias,
                              grid_size=grid_size, backend=backend, proj_drop=proj_drop, dims=dims,
                              resize_position=resize_position)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        if isinstance(act_layer, str):
            try:
                act_layer = get_act_layer(act_layer)
            except KeyError:
                raise ValueError(f"TransformerBlock act_layer: expected a timm activation name such as 'gelu' or "
                                 f"'quick_gelu', got {act_layer!r}") from None
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, pattern: Pattern | None = None) -> Tensor:
        """x ``(B, *grid, dim)``; key_padding_mask ``(B, *grid)`` bool (True = padding); pattern: this call's
        pattern instead of the block's (Swin's window clipped to a small grid) → ``(B, *grid, dim)``."""
        attn = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, pattern=pattern)  # (B, *grid, dim)
        x = x + self.drop_path1(self.ls1(attn))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
