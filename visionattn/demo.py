"""The operator demo (``visionattn demo``): every pattern on a 32×32 grid, fast backend against the reference spec —
agreement (forward and backward) and speed, measured now. (``make demo`` trains a model: ``visionattn train``.)"""

from __future__ import annotations

import statistics
import time

import torch

from .ops import (
    Axial,
    Global,
    Halo,
    Neighborhood,
    RelativeBias,
    Strided,
    Window,
    attention,
    choose_backend,
    prepare_call,
)

DEMO_PATTERNS = [
    Global(),
    Neighborhood(7),
    Neighborhood(7, dilation=2, border="pad"),
    Halo(8, 3),
    Window(7),
    Window(7, shift=3),
    Axial(0),
    Strided(32, 32),
]


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _forward_backward(q, k, v, pattern, position, backend):
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, pattern, position=position, backend=backend)
    out.backward(torch.ones_like(out))
    return out.detach(), q.grad, k.grad, v.grad


def run_demo(grid=(32, 32), batch: int = 2, heads: int = 3, head_dim: int = 32, repeats: int = 3) -> list[dict]:
    """Rows of measured figures, one per pattern; printed as a table by the CLI."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, *grid, heads, head_dim, generator=g) for _ in range(3))
    rows = []
    for pattern in DEMO_PATTERNS:
        radius = pattern.max_offset(grid)
        table = torch.randn(heads, *[2 * r + 1 for r in radius], generator=g)
        position = RelativeBias(table) if pattern.separable else None
        fast = choose_backend(prepare_call(q.requires_grad_(), k, v, pattern, position=position)).name
        q.requires_grad_(False)
        ref = _forward_backward(q, k, v, pattern, position, "reference")
        got = _forward_backward(q, k, v, pattern, position, fast)
        err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, ref, strict=True))
        t_ref = _median_ms(lambda p=pattern, s=position: _forward_backward(q, k, v, p, s, "reference"), repeats)
        t_fast = _median_ms(lambda p=pattern, s=position, b=fast: _forward_backward(q, k, v, p, s, b), repeats)
        rows.append(dict(pattern=repr(pattern), position=type(position).__name__ if position else "none",
                         backend=fast, rel_error=err, ref_ms=t_ref, fast_ms=t_fast, speedup=t_ref / t_fast))
    return rows


def format_rows(rows: list[dict]) -> str:
    head = f"{'pattern':<52} {'position':<12} {'backend':<9} {'max rel err':>11} {'ref ms':>8} {'fast ms':>8} {'×':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['pattern']:<52} {r['position']:<12} {r['backend']:<9} {r['rel_error']:>11.1e} "
                     f"{r['ref_ms']:>8.1f} {r['fast_ms']:>8.1f} {r['speedup']:>6.1f}")
    return "\n".join(lines)
