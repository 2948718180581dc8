"""The input contract of a backbone: what ``forward_features`` accepts, declared per family.

``Backbone.input_kind`` is one of:

* ``"image"``: ``(B, C, H, W)`` float, padding mask ``(B, H, W)``;
* ``"video"``: ``(B, C, T, H, W)`` float, padding mask ``(B, T, H, W)``;
* ``"tokens"``: ``(B, N)`` integer token ids (text), padding mask ``(B, N)``.

Padding masks are bool, True = padding (from batching inputs of different sizes); they reach the operator as
``key_padding_mask``. Both checks raise ``ValueError`` / ``TypeError`` saying what was expected and what came.
"""

from __future__ import annotations

import torch
from torch import Tensor

INPUT_KINDS = ("image", "video", "tokens")
_LAYOUT = {"image": "(B, {c}, H, W)", "video": "(B, {c}, T, H, W)", "tokens": "(B, N) integer token ids"}
_NOUN = {"image": "images", "video": "videos", "tokens": "token sequences"}
_MASK_LAYOUT = {"image": "(B, H, W)", "video": "(B, T, H, W)", "tokens": "(B, N)"}


def _got(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def check_input(kind: str, x, in_chans: int, owner: str) -> None:
    """Raise unless ``x`` fits ``kind`` (see the module docstring); ``in_chans`` is C for images and videos."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"{owner}.input_kind must be one of {INPUT_KINDS}, got {kind!r}")
    expected = _LAYOUT[kind].format(c=in_chans)
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner} expects {_NOUN[kind]} {expected}, got {_got(x)}")
    if kind == "tokens":
        ok = x.ndim == 2 and not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
    else:
        ok = x.ndim == (4 if kind == "image" else 5) and x.shape[1] == in_chans and x.is_floating_point()
    if not ok:
        hint = " (a video is (B, C, T, H, W): channels before time)" if kind == "video" and x.ndim == 5 else ""
        raise ValueError(f"{owner} expects {_NOUN[kind]} {expected}, got {_got(x)}{hint}")


def example_input(model, img_size, batch: int = 1, in_chans: int = 3, *, frames: int | None = None,
                  device=None, dtype=None, generator: torch.Generator | None = None) -> Tensor:
    """A random standard-normal input for ``model`` (its ``input_kind``): images ``(batch, in_chans, H, W)``, or
    videos ``(batch, in_chans, T, H, W)`` with ``T = frames`` or the model's ``num_frames``. ``img_size``: an int or
    ``(H, W)``. Token models have no size to draw from: a ``ValueError``."""
    from .sizes import to_pair

    kind = getattr(model, "input_kind", "image")
    h, w = to_pair(img_size)
    if kind == "image":
        shape = (batch, in_chans, h, w)
    elif kind == "video":
        frames = frames if frames is not None else getattr(model, "num_frames", None)
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"{type(model).__name__}: a video input needs a clip length; pass frames= (got "
                             f"{frames!r}, and the model has no num_frames)")
        shape = (batch, in_chans, frames, h, w)
    else:
        raise ValueError(f"{type(model).__name__}: no example input for input_kind {kind!r} (expected 'image' or "
                         f"'video')")
    return torch.randn(shape, generator=generator, dtype=dtype or torch.float32).to(device or "cpu")


def padding_shape(kind: str, x: Tensor) -> tuple[int, ...]:
    """The padding-mask shape that goes with input ``x``: ``(B, *spatial)``."""
    return (x.shape[0], *x.shape[1:]) if kind == "tokens" else (x.shape[0], *x.shape[2:])


def check_padding_mask(kind: str, x: Tensor, mask, owner: str) -> Tensor | None:
    """``None``, or ``mask`` as a bool tensor on ``x``'s device after checking its shape against ``x``."""
    if mask is None:
        return None
    expected = padding_shape(kind, x)
    if not isinstance(mask, Tensor):
        raise TypeError(f"{owner}: padding_mask must be a bool tensor {expected}, got {_got(mask)}")
    if mask.dtype != torch.bool or tuple(mask.shape) != expected:
        raise ValueError(
            f"{owner}: padding_mask must be bool {_MASK_LAYOUT[kind]} = {expected} (True = padding) for input "
            f"{tuple(x.shape)}, got {_got(mask)}"
        )
    return mask.to(x.device)


__all__ = ["INPUT_KINDS", "check_input", "check_padding_mask", "example_input", "padding_shape"]
