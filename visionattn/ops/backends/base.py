"""What a backend is: a name, a function, and a refusal that says why it cannot run a call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Backend:
    """``run(call) -> out (B, *q_grid, heads, v_dim)``; ``refuse(call) -> reason or None``."""

    name: str
    run: Callable
    refuse: Callable


def feature_map(x: Tensor) -> Tensor:
    """Positive feature map of the linear form, φ(x) = elu(x) + 1 (Katharopoulos et al., 2020)."""
    return F.elu(x) + 1.0
