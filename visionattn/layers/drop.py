"""Stochastic depth: the per-block drop-path rule, written once (every family calls it)."""

from __future__ import annotations

from timm.layers import DropPath


def drop_path_rates(rate: float, count: int) -> list[float]:
    """Stochastic depth rising linearly from 0 (first block) to ``rate`` (last block) over ``count`` blocks, as
    timm's ``torch.linspace(0, rate, count)`` (a single block gets 0). Plain floats: safe on the meta device.

    A model whose blocks come in parts (a hybrid's conv blocks, then its Transformer blocks) slices one list:
    ``drop_path_rates(rate, conv + vit)[conv:]`` are the Transformer blocks' rates."""
    if count < 0 or rate < 0:
        raise ValueError(f"drop_path_rates needs rate ≥ 0 and count ≥ 0, got rate={rate}, count={count}")
    return [rate * i / max(count - 1, 1) for i in range(count)]


def stage_drop_path_rates(rate: float, depths) -> list[list[float]]:
    """:func:`drop_path_rates` over all ``sum(depths)`` blocks, cut into one list per stage (Swin, CoAtNet, Video
    Swin: the rule rises over the whole network, not per stage)."""
    rates, out, first = drop_path_rates(rate, sum(depths)), [], 0
    for depth in depths:
        out.append(rates[first:first + depth])
        first += depth
    return out


__all__ = ["DropPath", "drop_path_rates", "stage_drop_path_rates"]
