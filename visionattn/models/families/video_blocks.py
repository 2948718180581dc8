"""Building blocks of the video families (:mod:`.vivit`, :mod:`.video_swin`): tubelet embedding, space-time
position embeddings, and the Transformer blocks of the ViViT factorisations and TimeSformer.

Every block is a :class:`visionattn.layers.TransformerBlock` (pre-norm attention + MLP) whose mixer is the one
:class:`visionattn.layers.Attention` with one of the operator's patterns on the clip's token grid ``(T, H, W)``:

=====================================  ===============================================================================
spatio-temporal (ViViT model 1)        ``Global()`` over all ``T·H·W`` tokens (plus the class token: a 1-D grid)
within a frame (models 2, 3, 4)        ``Window((1, H, W))`` on ``(T, H, W)``: a query sees the keys of its own frame
across time (models 3, 4, TimeSformer) ``Axial(0)`` on ``(T, H, W)``: a query sees its own position in every frame
TimeSformer's spatial attention        ``Axial(1)`` on ``(T, 1 + H·W)``: each frame's tokens and a copy of the class
                                       token (slot 0), so the class token attends within every frame
=====================================  ===============================================================================

Blocks pass a *video state* ``(prefix, x)``: ``prefix`` the class token ``(B, 1, C)`` or None, ``x`` the token grid
``(B, T, H, W, C)`` channels-last (the factorised encoder's temporal blocks: frame tokens ``(B, T, C)``). Their
``key_padding_mask`` is over ``x``'s grid (True = padding; prefix tokens never are).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerScale
from torch import Tensor, nn

from ...layers.absolute import LearnedPositionEmbedding
from ...layers.attention import Attention
from ...layers.transformer import TransformerBlock
from ...ops import attention
from ...ops.patterns import Axial, Global, Pattern, Window

__all__ = [
    "DividedSpaceTimeBlock",
    "FactorisedDotProductBlock",
    "FactorisedSelfAttentionBlock",
    "FrameBlock",
    "HeadSplitAttention",
    "JointSpaceTimeBlock",
    "TemporalBlock",
    "TubeletEmbed",
    "VideoPositionEmbedding",
    "VideoState",
    "frame_window",
    "masked_frame_mean",
]

VideoState = tuple[Tensor | None, Tensor]
TIME = Axial(0)  # across frames, at one spatial position, on a (T, H, W) grid


def frame_window(grid: tuple[int, ...]) -> Window:
    """``Window((1, H, W))`` on a ``(T, H, W)`` grid: each query attends to the keys of its own frame."""
    return Window((1, *grid[1:]))


def _mlp_act(block: TransformerBlock, act: str) -> None:
    """Use the GELU tanh approximation (``act='gelu_tanh'``: Hugging Face ViViT's ``gelu_fast``) in the MLP."""
    if act == "gelu_tanh":
        block.mlp.act = nn.GELU(approximate="tanh")
    elif act != "gelu":
        raise ValueError(f"mlp_act: expected 'gelu' or 'gelu_tanh', got {act!r}")


# -- embeddings -----------------------------------------------------------------------------------------------
class TubeletEmbed(nn.Module):
    """Non-overlapping ``t × p × q`` tubelets: videos ``(B, C_in, T, H, W)`` → tokens ``(B, T/t, H/p, W/q, dim)``
    channels-last (a Conv3d with kernel = stride = the tubelet; ViViT's tubelet embedding). ``norm``: a LayerNorm
    after it (Video Swin)."""

    def __init__(self, tubelet: tuple[int, int, int], dim: int, in_chans: int = 3, norm: bool = False,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.tubelet = tuple(int(n) for n in tubelet)
        if len(self.tubelet) != 3 or min(self.tubelet) < 1:
            raise ValueError(f"TubeletEmbed: tubelet must be 3 positive ints (t, p, p), got {tubelet}")
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=self.tubelet, stride=self.tubelet)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        size = tuple(x.shape[2:])
        if any(n % k for n, k in zip(size, self.tubelet, strict=True)):
            rest = ", ".join(f"{n} % {k} = {n % k}" for n, k in zip(size, self.tubelet, strict=True))
            raise ValueError(f"TubeletEmbed: clip T×H×W = {'×'.join(map(str, size))} must be a multiple of the "
                             f"tubelet {'×'.join(map(str, self.tubelet))} on every axis; got {rest}")
        return self.norm(self.proj(x).permute(0, 2, 3, 4, 1))  # (B, T', H', W', dim)


class VideoPositionEmbedding(nn.Module):
    """Absolute space-time position embeddings added to tubelet tokens ``(B, T, H, W, C)``.

    kind: ``'learned'`` — one table ``grid.weight (1, T, H, W, C)`` (ViViT); ``'separable'`` — a spatial table
    ``space.weight (1, H, W, C)`` shared by every frame plus a temporal one ``time.weight (1, T, C)`` shared by
    every position (TimeSformer); ``'none'``. Tables are interpolated for other grids
    (:class:`~visionattn.layers.LearnedPositionEmbedding`) and, with a padding mask, fitted to each clip's content
    extent, so a clip padded at the end (in time or space) is embedded as it would be alone."""

    KINDS = ("learned", "separable", "none")

    def __init__(self, grid: tuple[int, int, int], dim: int, kind: str = "learned"):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"VideoPositionEmbedding: kind must be one of {self.KINDS}, got {kind!r}")
        self.kind = kind
        self.grid = self.space = self.time = None
        if kind == "learned":
            self.grid = LearnedPositionEmbedding(grid, dim)  # weight (1, T, H, W, C)
        elif kind == "separable":
            self.space = LearnedPositionEmbedding(grid[1:], dim)  # weight (1, H, W, C)
            self.time = LearnedPositionEmbedding(grid[:1], dim)  # weight (1, T, C)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, T, H, W, C)``; padding_mask ``(B, T, H, W)`` bool on the token grid (True = padding)."""
        if self.kind == "learned":
            return self.grid(x, padding_mask=padding_mask)  # (B, T, H, W, C)
        if self.kind == "none":
            return x
        B, T, H, W, C = x.shape
        if padding_mask is None:
            space = self.space.embedding((H, W))[:, None]  # (1, 1, H, W, C)
            time = self.time.embedding((T,))[:, :, None, None]  # (1, T, 1, 1, C)
        else:  # each clip's embeddings fitted to its content: rows / columns / frames that hold any content
            zeros = x.new_zeros(B, H, W, C)
            space = self.space(zeros, padding_mask=padding_mask.all(dim=1))[:, None]  # (B, 1, H, W, C)
            frames = padding_mask.flatten(2).all(dim=-1)  # (B, T)
            time = self.time(x.new_zeros(B, T, C), padding_mask=frames)[:, :, None, None]  # (B, T, 1, 1, C)
        return x + space.to(x.dtype) + time.to(x.dtype)


def masked_frame_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """``(B, T, H, W, C)`` → ``(B, T, C)``: each frame's mean token, over its content tokens when ``mask``
    ``(B, T, H, W)`` (True = padding) is given (an all-padding frame gives zeros)."""
    if mask is None:
        return x.mean(dim=(2, 3))  # (B, T, C)
    keep = (~mask)[..., None].to(x.dtype)  # (B, T, H, W, 1)
    total = (torch.where(keep.bool(), x, 0.0)).sum(dim=(2, 3))  # (B, T, C); NaN padding never reaches the sum
    return total / keep.sum(dim=(2, 3)).clamp(min=1)


# -- attention with head groups (ViViT model 4) ------------------------------------------------------------------
class HeadSplitAttention(Attention):
    """:class:`~visionattn.layers.Attention` whose heads are split into equal groups, each group attending with its
    own pattern, the groups' outputs concatenated before the output projection (ViViT's factorised dot-product
    attention: half the heads spatial, half temporal). One ``qkv`` and one ``proj`` as every Attention.

    ``forward(x, key_padding_mask=None, patterns=...)``: x ``(B, *grid, dim)``; ``patterns`` one per group (heads
    ``[g·h/G, (g+1)·h/G)`` use ``patterns[g]``) → ``(B, *grid, dim)``. Positions: none (absolute embeddings)."""

    def __init__(self, dim: int, heads: int, groups: int = 2, qkv_bias: bool = True, proj_drop: float = 0.0,
                 backend: str = "auto"):
        if groups < 1 or heads % groups:
            raise ValueError(f"HeadSplitAttention: heads {heads} must split into {groups} equal groups")
        super().__init__(dim, heads, Global(), qkv_bias=qkv_bias, backend=backend, proj_drop=proj_drop, dims=3)
        self.groups = groups

    def forward(self, x: Tensor, context: Tensor | None = None, *, key_padding_mask: Tensor | None = None,
                patterns: tuple[Pattern, ...] = (), **unused) -> Tensor:
        if context is not None or any(v is not None for v in unused.values()):
            raise ValueError("HeadSplitAttention is self-attention with per-group patterns: no context, positions or "
                             "single pattern")
        if len(patterns) != self.groups:
            raise ValueError(f"HeadSplitAttention: expected {self.groups} patterns (one per head group), got "
                             f"{len(patterns)}")
        self._check(x, None, None, None)
        h, d, n = self.heads, self.head_dim, self.heads // self.groups
        q, k, v = self.qkv(x).reshape(*x.shape[:-1], 3, h, d).unbind(-3)  # (B, *grid, h, d) each
        outs = [attention(q[..., g * n:(g + 1) * n, :], k[..., g * n:(g + 1) * n, :], v[..., g * n:(g + 1) * n, :],
                          pattern, form=self.form, backend=self.backend, key_padding_mask=key_padding_mask)
                for g, pattern in enumerate(patterns)]  # each (B, *grid, h/G, d)
        out = torch.cat(outs, dim=-2).flatten(-2)  # (B, *grid, h·d)
        return self.proj_drop(self.proj(out))  # (B, *grid, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads} in {self.groups} groups, head_dim={self.head_dim}"


# -- blocks -----------------------------------------------------------------------------------------------------
class _VideoBlock(TransformerBlock):
    """A TransformerBlock built for video (Global placeholder pattern, MLP activation chosen)."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0,
                 proj_drop: float = 0.0, layer_scale: float | None = None, norm_eps: float = 1e-6,
                 backend: str = "auto", mlp_act: str = "gelu", dims: int = 3):
        super().__init__(dim, heads, Global(), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path,
                         proj_drop=proj_drop, layer_scale=layer_scale, norm_eps=norm_eps, backend=backend, dims=dims)
        _mlp_act(self, mlp_act)

    def _mlp(self, x: Tensor) -> Tensor:
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class JointSpaceTimeBlock(_VideoBlock):
    """ViViT model 1: Global attention over every token of the clip. With a class token the tokens are flattened to
    a 1-D grid ``(1 + T·H·W,)`` (class token first, then raster ``t, h, w`` order, as Hugging Face's
    ``VivitModel``); without one, Global on the ``(T, H, W)`` grid itself."""

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state
        if prefix is None:
            return None, TransformerBlock.forward(self, x, key_padding_mask)  # (B, T, H, W, C)
        P, shape = prefix.shape[1], x.shape
        flat = torch.cat([prefix, x.flatten(1, 3)], dim=1)  # (B, P + N, C)
        mask = None
        if key_padding_mask is not None:
            mask = F.pad(key_padding_mask.flatten(1), (P, 0), value=False)  # (B, P + N): prefix never padding
        out = TransformerBlock.forward(self, flat, mask)  # (B, P + N, C)
        return out[:, :P], out[:, P:].reshape(shape)


class FrameBlock(_VideoBlock):
    """Attention within each frame (the factorised encoder's spatial transformer): ``Window((1, H, W))`` on the
    ``(T, H, W)`` grid, i.e. an image Transformer block run on every frame."""

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state
        return prefix, TransformerBlock.forward(self, x, key_padding_mask, frame_window(x.shape[1:4]))


class TemporalBlock(_VideoBlock):
    """The factorised encoder's temporal transformer: Global attention over frame tokens ``(B, T, C)``. The first
    temporal block (``pool=True``) receives the spatial transformer's tokens ``(B, T, H, W, C)`` and turns each
    frame into one token: the mean of its content tokens, then ``frame_norm`` (LayerNorm) — the frame
    representation (the paper uses a per-frame class token instead; here every spatial token is pooled)."""

    def __init__(self, dim: int, heads: int, *, pool: bool = False, norm_eps: float = 1e-6, **kwargs):
        super().__init__(dim, heads, norm_eps=norm_eps, dims=1, **kwargs)
        self.frame_norm = nn.LayerNorm(dim, eps=norm_eps) if pool else None

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state
        if self.frame_norm is not None:
            x = self.frame_norm(masked_frame_mean(x, key_padding_mask))  # (B, T, C)
        frames = None if key_padding_mask is None else key_padding_mask.flatten(2).all(dim=-1)  # (B, T)
        return prefix, TransformerBlock.forward(self, x, frames)  # (B, T, C)


class FactorisedSelfAttentionBlock(_VideoBlock):
    """ViViT model 3: self-attention factorised inside the block — spatial (``attn``, ``Window((1, H, W))``), then
    temporal (``attn_time``, ``Axial(0)``), each pre-norm with its own residual, then the MLP:
    ``x += attn(norm1(x))``; ``x += attn_time(norm_time(x))``; ``x += mlp(norm2(x))``. No class token.
    ``attn_time.proj`` starts at zero when the block is initialised from an image model (the block is then the
    image block applied per frame)."""

    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, drop_path: float = 0.0,
                 proj_drop: float = 0.0, layer_scale: float | None = None, norm_eps: float = 1e-6,
                 backend: str = "auto", **kwargs):
        super().__init__(dim, heads, qkv_bias=qkv_bias, drop_path=drop_path, proj_drop=proj_drop,
                         layer_scale=layer_scale, norm_eps=norm_eps, backend=backend, **kwargs)
        self.norm_time = nn.LayerNorm(dim, eps=norm_eps)
        self.attn_time = Attention(dim, heads, TIME, qkv_bias=qkv_bias, backend=backend, proj_drop=proj_drop, dims=3)
        self.ls_time = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path_time = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state  # x: (B, T, H, W, C)
        space = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, pattern=frame_window(x.shape[1:4]))
        x = x + self.drop_path1(self.ls1(space))
        time = self.attn_time(self.norm_time(x), key_padding_mask=key_padding_mask)  # (B, T, H, W, C)
        x = x + self.drop_path_time(self.ls_time(time))
        return prefix, self._mlp(x)


class FactorisedDotProductBlock(_VideoBlock):
    """ViViT model 4: one attention layer whose heads are split, half attending within the frame
    (``Window((1, H, W))``), half across time (``Axial(0)``), outputs concatenated (:class:`HeadSplitAttention`);
    otherwise a plain pre-norm Transformer block (same parameters as model 1's). No class token."""

    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, proj_drop: float = 0.0, backend: str = "auto",
                 **kwargs):
        super().__init__(dim, heads, qkv_bias=qkv_bias, proj_drop=proj_drop, backend=backend, **kwargs)
        self.attn = HeadSplitAttention(dim, heads, 2, qkv_bias=qkv_bias, proj_drop=proj_drop, backend=backend)

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state  # x: (B, T, H, W, C)
        mixed = self.attn(self.norm1(x), key_padding_mask=key_padding_mask,
                          patterns=(frame_window(x.shape[1:4]), TIME))
        x = x + self.drop_path1(self.ls1(mixed))
        return prefix, self._mlp(x)


class DividedSpaceTimeBlock(_VideoBlock):
    """TimeSformer's divided space-time attention (Hugging Face ``TimesformerLayer``, ``divided_space_time``):

    1. temporal: ``x += temporal_fc(attn_time(norm_time(x)))`` with ``Axial(0)`` on ``(T, H, W)`` (the class token
       does not take part);
    2. spatial: each frame's tokens with a copy of the class token in slot 0, ``Axial(1)`` on the ``(T, 1 + H·W)``
       grid (``attn``, ``norm1``); tokens add their output, the class token adds the mean of its T outputs (over
       the frames that hold content, with a padding mask);
    3. the MLP on every token (``norm2``, ``mlp``).

    ``temporal_fc`` starts at zero when initialised from an image model (TimeSformer's init)."""

    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, proj_drop: float = 0.0, norm_eps: float = 1e-6,
                 backend: str = "auto", **kwargs):
        super().__init__(dim, heads, qkv_bias=qkv_bias, proj_drop=proj_drop, norm_eps=norm_eps, backend=backend,
                         dims=2, **kwargs)
        self.norm_time = nn.LayerNorm(dim, eps=norm_eps)
        self.attn_time = Attention(dim, heads, TIME, qkv_bias=qkv_bias, backend=backend, proj_drop=proj_drop, dims=3)
        self.temporal_fc = nn.Linear(dim, dim)

    def forward(self, state: VideoState, key_padding_mask: Tensor | None = None) -> VideoState:
        prefix, x = state  # prefix: (B, P, C) or None; x: (B, T, H, W, C)
        B, T, H, W, C = x.shape
        time = self.attn_time(self.norm_time(x), key_padding_mask=key_padding_mask)  # (B, T, H, W, C)
        x = x + self.temporal_fc(self.drop_path1(time))
        frames = x.reshape(B, T, H * W, C)  # (B, T, HW, C)
        P = 0 if prefix is None else prefix.shape[1]
        if P:
            frames = torch.cat([prefix[:, None].expand(B, T, P, C), frames], dim=2)  # (B, T, P + HW, C)
        mask = None
        if key_padding_mask is not None:
            mask = F.pad(key_padding_mask.reshape(B, T, H * W), (P, 0), value=False)  # (B, T, P + HW)
        space = self.drop_path1(self.attn(self.norm1(frames), key_padding_mask=mask, pattern=Axial(1)))
        x = x + space[:, :, P:].reshape(B, T, H, W, C)
        if P:
            cls = space[:, :, :P]  # (B, T, P, C): the class token's output in each frame
            if key_padding_mask is None:
                prefix = prefix + cls.mean(dim=1)  # (B, P, C): the mean over frames
            else:  # the mean over the frames that hold content (a padded clip's class token = the clip's alone)
                content = ~key_padding_mask.flatten(2).all(dim=-1)  # (B, T)
                weight = content / content.sum(dim=1, keepdim=True).clamp(min=1)  # (B, T)
                prefix = prefix + torch.where(content[..., None, None], cls, 0.0).mul(weight[..., None, None]).sum(1)
            prefix = self._mlp(prefix)
        return prefix, self._mlp(x)
