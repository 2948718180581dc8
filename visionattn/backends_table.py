"""The support matrix of the backends: each pattern × position × form, accepted or the refusal reason."""

from __future__ import annotations

import torch

from .ops import (
    BACKENDS,
    Axial,
    Global,
    Graph,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Rope,
    Strided,
    Window,
    prepare_call,
    rope_frequencies,
)


def support_table(grid=(8, 8), heads: int = 2, head_dim: int = 8) -> str:
    """A text table; each cell is 'yes' or the backend's own refusal reason (abridged)."""
    patterns = [Global(), Neighborhood(3), Halo(4, 1), Window(4, 2), Axial(1), Strided(4, 8),
                Graph(torch.tensor([[0, 1], [1, 0]]))]
    lines = []
    for pattern in patterns:
        radius = pattern.max_offset(grid)
        positions = {
            "none": None,
            "rel_bias": RelativeBias(torch.zeros(heads, *[2 * r + 1 for r in radius])),
            "rel_logits": RelativeLogits(tuple(torch.zeros(2 * r + 1, head_dim) for r in radius)),
            "rope": Rope(rope_frequencies(head_dim, len(grid))),
        }
        for form in ("softmax", "linear"):
            for name, position in positions.items():
                q = torch.randn(1, *grid, heads, head_dim, requires_grad=True)
                call = prepare_call(q, q, q, pattern, position=position, form=form)
                cells = []
                for backend in BACKENDS.values():
                    reason = backend.refuse(call)
                    cells.append(f"{backend.name}: {'yes' if reason is None else 'no (' + reason[:48] + ')'}")
                lines.append(f"{pattern!r:<45} {name:<10} {form:<7} | " + " | ".join(cells))
    return "\n".join(lines)
