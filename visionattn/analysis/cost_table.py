"""The tutorial's "Attention is cheap" table, reproduced exactly, then extended with the operator's patterns.

The tutorial (``shared/seed``, "Attention is Cheap!") prints, at length = dim = 1000 and kernel width 3:
self-attention ``O(length²·dim) = 4·10⁹``, RNN (LSTM) ``O(length·dim²) = 16·10⁹``, convolution
``O(length·dim²·kernel) = 6·10⁹``. Those figures are FLOPs with a multiply and an add counted separately (2 FLOPs
per multiply-add, as ``torch.utils.flop_counter`` counts) and these constant factors (:data:`FACTORS`; the tests
count them with ``FlopCounterMode`` on ``nn.LSTM``, ``nn.Conv1d`` and the reference backend):

* self-attention: QKᵀ and AV, ``length²·dim`` multiply-adds each → ``4·length²·dim``;
* LSTM: per step 4 gates × (input + recurrent) ``dim × dim`` matrix-vector products = ``8·dim²`` multiply-adds
  → ``16·length·dim²`` (biases and the elementwise gate arithmetic are not matmul work);
* convolution: ``kernel·dim²`` multiply-adds per output position (``dim`` in and out channels)
  → ``2·kernel·length·dim²``.

The operator rows cost each pattern with :func:`visionattn.analysis.cost.operator_flops` on the same
``length`` tokens and ``dim`` channels (one head of ``dim``; h heads of ``dim/h`` cost the same except for the
linear form, which becomes ``4·length·dim²/h``): the 1-D sequence for Global, Neighborhood, Window, Halo,
Strided and the linear form; a 2-D grid of the same token count (the most square ``H × W``) for axial attention
(a height pass plus a width pass).
"""

from __future__ import annotations

import csv
import io
import math

from ..ops.patterns import Axial, Global, Halo, Neighborhood, Strided, Window
from .cost import operator_flops, pair_count

TUTORIAL = {"length": 1000, "dim": 1000, "kernel": 3}
FACTORS = (
    "FLOP = one multiply or one add (2 per multiply-add, as torch.utils.flop_counter); only matmul work counts.",
    "self-attention: QK^T and AV, length^2*dim multiply-adds each -> 4*length^2*dim",
    "RNN (LSTM): per step 4 gates x (input + recurrent) dim x dim mat-vec = 8*dim^2 multiply-adds -> 16*length*dim^2",
    "convolution: kernel*dim^2 multiply-adds per position -> 2*kernel*length*dim^2",
    "operator patterns: 2*pairs*(dim + dim) (QK^T and AV over the allowed query-key pairs only)",
    "linear form phi(Q)(phi(K)^T V): 4*length*dim^2 + 2*length*dim (the normaliser)",
)
COLUMNS = ("operation", "complexity", "flops", "as_1e", "vs_attention", "pairs")


def _positive(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def tutorial_rows(length: int = 1000, dim: int = 1000, kernel: int = 3) -> list[dict]:
    """The tutorial's three rows: ``operation``, ``complexity``, ``flops`` (int)."""
    n, d, k = _positive(length, "length"), _positive(dim, "dim"), _positive(kernel, "kernel")
    return [
        {"operation": "Self-Attention", "complexity": "O(length^2 * dim)", "flops": 4 * n * n * d},
        {"operation": "RNN (LSTM)", "complexity": "O(length * dim^2)", "flops": 16 * n * d * d},
        {"operation": "Convolution", "complexity": "O(length * dim^2 * kernel_width)", "flops": 2 * k * n * d * d},
    ]


def square_grid(tokens: int) -> tuple[int, int]:
    """The most square ``(H, W)`` with ``H·W = tokens`` and ``H ≤ W`` (1000 → (25, 40))."""
    h = max(f for f in range(1, math.isqrt(tokens) + 1) if tokens % f == 0)
    return h, tokens // h


def pattern_rows(length: int = 1000, dim: int = 1000, kernel: int = 3, window: int = 8, block: int = 8,
                 halo: int = 3) -> list[dict]:
    """One row per pattern of the operator at the same length and dim (module docstring): ``operation``,
    ``complexity``, ``flops``, ``pairs`` (allowed query-key pairs)."""
    n, d, k = _positive(length, "length"), _positive(dim, "dim"), _positive(kernel, "kernel")
    window, block = _positive(window, "window"), _positive(block, "block")
    if not isinstance(halo, int) or halo < 0:
        raise ValueError(f"halo must be an int ≥ 0, got {halo!r}")
    if k % 2 == 0 or k > n:
        raise ValueError(f"kernel must be odd and ≤ length {n} for Neighborhood(kernel), got {k}")
    if window > n:
        raise ValueError(f"window must be ≤ length {n}, got {window}")
    stride = math.isqrt(n - 1) + 1 if n > 1 else 1  # ceil(sqrt(n)), the Sparse Transformer's choice
    hw = square_grid(n)
    cases = [  # (operation, complexity, patterns (summed), grid, form)
        ("Global (self-attention)", "O(length^2 * dim)", (Global(),), (n,), "softmax"),
        (f"Neighborhood({k})", "O(length * kernel * dim)", (Neighborhood(k),), (n,), "softmax"),
        (f"Window({window})", "O(length * window * dim)", (Window(window),), (n,), "softmax"),
        (f"Halo({block}, halo={halo})", "O(length * (block + 2 halo) * dim)", (Halo(block, halo),), (n,), "softmax"),
        (f"Axial, {hw[0]}x{hw[1]} grid (H + W passes)", "O(length * (H + W) * dim)", (Axial(0), Axial(1)), hw,
         "softmax"),
        (f"Strided({stride}, {stride})", "O(length * (2 local + length/stride) * dim)", (Strided(stride, stride),),
         (n,), "softmax"),
        ("Global, linear form", "O(length * dim^2)", (Global(),), (n,), "linear"),
    ]
    rows = []
    for name, complexity, patterns, grid, form in cases:
        flops = sum(operator_flops(p, grid, heads=1, head_dim=d, form=form) for p in patterns)
        pairs = sum(pair_count(p, grid) for p in patterns) if form == "softmax" else None
        rows.append({"operation": name, "complexity": complexity, "flops": flops, "pairs": pairs})
    return rows


def cost_table(length: int = 1000, dim: int = 1000, kernel: int = 3, window: int = 8, block: int = 8,
               halo: int = 3) -> list[dict]:
    """The tutorial rows then the pattern rows, each with ``as_1e`` (FLOPs as ``x·10^e`` with the exponent of the
    smallest tutorial row, so the defaults print the tutorial's ``4·10^9``, ``16·10^9``, ``6·10^9``) and
    ``vs_attention`` (FLOPs / self-attention's)."""
    rows = tutorial_rows(length, dim, kernel) + pattern_rows(length, dim, kernel, window, block, halo)
    exponent = int(math.floor(math.log10(min(r["flops"] for r in rows[:3]))))
    attention = rows[0]["flops"]
    for row in rows:
        row.setdefault("pairs", None)
        row["as_1e"] = f"{_mantissa(row['flops'], exponent)}·10^{exponent}"
        row["vs_attention"] = round(row["flops"] / attention, 6)
    return rows


def _mantissa(value: int, exponent: int) -> str:
    m = value / 10**exponent
    return f"{m:.0f}" if m == round(m) and m >= 1 else f"{m:.4g}"


def format_table(rows: list[dict], length: int, dim: int, kernel: int) -> str:
    """The table as text: aligned columns, the tutorial's parameter line under it, then :data:`FACTORS`."""
    header = ("operation", "complexity", "FLOPs", "=", "vs self-attention", "pairs")
    cells = [(r["operation"], r["complexity"], f"{r['flops']:,}", r["as_1e"], f"{r['vs_attention']:.4g}",
              "" if r["pairs"] is None else f"{r['pairs']:,}") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(values):
        return "  ".join(v.rjust(w) if 2 <= i <= 5 else v.ljust(w) for i, (v, w) in
                         enumerate(zip(values, widths, strict=True))).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells[:3]]
    out.append("  ".join("." * w for w in widths))  # tutorial rows above, the operator's patterns below
    out += [line(c) for c in cells[3:]]
    out.append(f"length={length} dim={dim} kernel_width={kernel}")
    out += ["", "constant factors:"] + [f"  {f}" for f in FACTORS]
    return "\n".join(out)


def format_csv(rows: list[dict]) -> str:
    """CSV with :data:`COLUMNS` (``flops`` as an exact integer, ``pairs`` empty where it does not apply)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "pairs": "" if row["pairs"] is None else row["pairs"]})
    return buffer.getvalue()


def counted_tutorial_flops(length: int, dim: int, kernel: int, device: str = "meta") -> dict[str, int]:
    """FLOPs of the three tutorial operations counted by ``torch.utils.flop_counter.FlopCounterMode``: one
    ``nn.LSTM(dim, dim)`` over ``length`` steps, one ``nn.Conv1d(dim, dim, kernel, padding='same')``, one call of
    the reference backend (Global, one head of ``dim``). On the meta device (default) nothing is computed (an LSTM
    still loops ``length`` steps: ~10 s at length 1000); on CPU ``nn.LSTM`` runs a fused kernel the counter does not
    see (it counts 0)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..ops import attention

    n, d, k = _positive(length, "length"), _positive(dim, "dim"), _positive(kernel, "kernel")
    with torch.device(device):
        lstm, conv = torch.nn.LSTM(d, d), torch.nn.Conv1d(d, d, k, padding="same")
        x = torch.randn(n, 1, d)  # (length, batch, dim)
        q = torch.randn(1, n, 1, d)  # (B, length, heads, head_dim)
    out = {}
    with torch.no_grad():
        for name, fn in (("Self-Attention", lambda: attention(q, q, q, Global(), backend="reference")),
                         ("RNN (LSTM)", lambda: lstm(x)), ("Convolution", lambda: conv(x.permute(1, 2, 0)))):
            with FlopCounterMode(display=False) as mode:
                fn()
            out[name] = int(mode.get_total_flops())
    return out
