"""What a backend is: a name, a function, and a refusal that says why it cannot run a call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..probs import feature_map

__all__ = ["Backend", "feature_map"]


@dataclass(frozen=True)
class Backend:
    """``run(call) -> out (B, *q_grid, heads, v_dim)``; ``refuse(call) -> reason or None``."""

    name: str
    run: Callable
    refuse: Callable
