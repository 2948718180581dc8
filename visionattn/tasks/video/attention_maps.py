"""Space-time attention maps of a video model: where one query token (a tubelet of a moving digit) attends, in
every frame, for each attention call of a block — drawn over the clip's frames.

The calls are captured with :func:`visionattn.ops.observe_attention` (the model runs its usual backends; outputs
unchanged) and the query's row is recomputed with :func:`visionattn.ops.attention_probs` (the reference math).
Each call's keys are laid back on the model's tubelet grid ``(T', H', W')``:

=================================  ===================================================================================
call's key grid                    keys on ``(T', H', W')``
=================================  ===================================================================================
``(T', H', W')``                   as they are (Window((1, H, W)): the query's frame; Axial(0): its tube; Global)
``(1 + T'·H'·W',)``                the class token dropped, the rest in raster order (ViViT model 1)
``(T', 1 + H'·W')``                each frame's class-token copy dropped (TimeSformer's spatial attention)
``(T',)``                          one weight per frame, spread over the frame (the factorised encoder's temporal)
=================================  ===================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ...ops import AttentionCall, Axial, Window, attention_probs, observe_attention

__all__ = ["SpaceTimeMap", "brightest_token", "space_time_maps", "space_time_figure"]


@dataclass
class SpaceTimeMap:
    """``label``: which call (block, pattern, heads); ``weights``: ``(T', H', W')`` float, the query's attention
    (mean over the call's heads) on the tubelet grid, summing to 1."""

    label: str
    weights: Tensor


def brightest_token(clip: Tensor, grid: tuple[int, int, int], frame: int | None = None) -> tuple[int, int, int]:
    """The tubelet ``(t', h', w')`` of frame-tubelet ``frame`` (default: the middle one) whose pixels are brightest
    on average — a moving digit's, in a moving-digits clip. ``clip``: ``(3, T, H, W)``."""
    T, H, W = grid
    t = T // 2 if frame is None else frame
    x = clip.float().mean(dim=0)  # (T_px, H_px, W_px)
    tt, ph, pw = x.shape[0] // T, math.ceil(x.shape[1] / H), math.ceil(x.shape[2] / W)
    cells = x[t * tt:(t + 1) * tt].mean(dim=0)  # (H_px, W_px)
    cells = torch.nn.functional.avg_pool2d(cells[None, None], (ph, pw), ceil_mode=True)[0, 0]  # (H', W')
    index = int(cells.argmax())
    return t, index // cells.shape[1], index % cells.shape[1]


def _query_row(kv_grid: tuple[int, ...], grid: tuple[int, int, int], query: tuple[int, int, int]) -> int | None:
    T, H, W = grid
    t, h, w = query
    if kv_grid == grid:
        return (t * H + h) * W + w
    if kv_grid == (1 + T * H * W,):
        return 1 + (t * H + h) * W + w
    if kv_grid == (T, 1 + H * W):
        return t * (1 + H * W) + 1 + h * W + w
    if kv_grid == (T,):
        return t
    return None


def _on_grid(row: Tensor, kv_grid: tuple[int, ...], grid: tuple[int, int, int]) -> Tensor:
    """``row`` ``(N_k,)`` laid on ``(T', H', W')`` (see the module table)."""
    T, H, W = grid
    if kv_grid == grid:
        return row.reshape(grid)
    if kv_grid == (1 + T * H * W,):
        return row[1:].reshape(grid)
    if kv_grid == (T, 1 + H * W):
        return row.reshape(T, 1 + H * W)[:, 1:].reshape(grid)
    return (row[:, None, None] / (H * W)).expand(grid).clone()  # (T,): one weight per frame, spread over it


def _what(call: AttentionCall, grid: tuple[int, int, int]) -> str:
    if call.kv_grid == (grid[0],):
        return "across frames"
    if isinstance(call.pattern, Window) or (isinstance(call.pattern, Axial) and call.pattern.axis == 1):
        return "within the frame"
    if isinstance(call.pattern, Axial):
        return "across time"
    return "all tokens"


@torch.no_grad()
def space_time_maps(model: nn.Module, clip: Tensor, query: tuple[int, int, int] | None = None,
                    block: int = -1) -> tuple[list[SpaceTimeMap], tuple[int, int, int], tuple[int, int, int]]:
    """The attention calls of ``model.stages[block]`` on ``clip`` ``(3, T, H, W)`` (a video backbone of
    :mod:`visionattn.models.families.vivit`), for the query tubelet ``query`` (default: :func:`brightest_token`):
    ``(maps, query, grid)``. A factorised encoder's temporal block is one map of frame weights."""
    was = model.training
    model.eval()
    calls: list[AttentionCall] = []
    inside = [False]
    stage = model.stages[block]
    hooks = [stage.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True)),
             stage.register_forward_hook(lambda *_: inside.__setitem__(0, False))]

    def keep(call: AttentionCall, out: Tensor) -> None:
        if inside[0]:
            calls.append(call)

    try:
        with observe_attention(keep):
            model(clip[None].to(next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was)
    grid = tuple(model._last_grid)
    query = brightest_token(clip, grid) if query is None else tuple(query)
    maps = []
    for call in calls:
        row = _query_row(call.kv_grid, grid, query)
        if row is None:
            raise ValueError(f"space_time_maps: a call on grid {call.kv_grid} cannot be laid on the tubelet grid "
                             f"{grid}")
        probs = attention_probs(call, torch.tensor([row], device=call.q.device))[0, :, 0]  # (heads, N_k)
        label = f"{_what(call, grid)}: {call.pattern!r}, {call.heads} head(s)"
        maps.append(SpaceTimeMap(label, _on_grid(probs.float().mean(0).cpu(), call.kv_grid, grid)))
    return maps, query, grid


def space_time_figure(maps: list[SpaceTimeMap], frames: Tensor, query: tuple[int, int, int],
                      grid: tuple[int, int, int], title: str = ""):
    """A figure: one row per map, one column per tubelet frame; each panel shows the frame (``frames`` ``(T, H, W)``
    in [0, 1], the first frame of each tubelet) with the attention weights over it (each row scaled to its own
    maximum) and the query tubelet outlined in its frame."""
    from matplotlib.patches import Rectangle

    from ...plotting import figure

    T, H, W = grid
    step = frames.shape[0] // T
    ph, pw = frames.shape[1] / H, frames.shape[2] / W
    fig = figure(1.6 * T + 0.6, 1.7 * len(maps) + 0.5)
    axes = fig.subplots(len(maps), T, squeeze=False)
    for r, m in enumerate(maps):
        top = float(m.weights.max()) or 1.0
        for t in range(T):
            ax = axes[r, t]
            ax.imshow(np.asarray(frames[t * step]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(np.asarray(m.weights[t]), cmap="inferno", alpha=0.55, vmin=0, vmax=top,
                      extent=(-0.5, frames.shape[2] - 0.5, frames.shape[1] - 0.5, -0.5), interpolation="nearest")
            if t == query[0]:
                ax.add_patch(Rectangle((query[2] * pw - 0.5, query[1] * ph - 0.5), pw, ph, fill=False,
                                       edgecolor="cyan", linewidth=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t * step}", fontsize=8)
            if t == 0:
                ax.set_ylabel(m.label.replace(": ", ":\n", 1), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
