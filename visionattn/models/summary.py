"""One summary row per registered preset: taxonomy axes, parameters and MACs (for ``visionattn models``).

A row is a flat dict with these keys (JSON-ready):

``name``, ``purity``, ``form``, ``scales``, ``geometry``, ``block`` (the taxonomy axes), ``params`` (int, all
parameters with the preset's default head: 1000 classes, none for the DINO backbones), ``params_m`` (millions),
``gmacs`` (multiply-adds ×1e-9 of one forward at the default resolution ``img_size``, batch 1: what timm and the
papers call "GFLOPs"), ``gflops`` (= 2·gmacs, multiply and add counted separately), ``attn_gmacs`` (the attention
operator's share of ``gmacs``), ``img_size``, ``tiny``, ``paper``. Floats are rounded to 4 significant digits.

Nothing is cached: each row builds the model on the ``meta`` device (shapes only: no memory, no init, so ViT-B or a
video model costs seconds) and counts with :func:`visionattn.models.flops.count_flops` (attention intercepted, not
executed; ``torch.no_grad``; batch 1). Counts equal those of the model built on the CPU (tested).
"""

from __future__ import annotations

import json

import torch

from .flops import count_flops, count_params
from .registry import create_model, get_preset, list_models

COLUMNS = ("name", "purity", "form", "scales", "geometry", "block", "params_m", "gmacs", "attn_gmacs", "img_size",
           "paper")


def preset_row(name: str, num_classes: int | None = None) -> dict:
    """The summary row of one registered preset (see the module docstring for the keys); ``num_classes``
    defaults to the preset's own."""
    preset = get_preset(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
        params = count_params(model)
        counts = count_flops(model, preset.img_size, batch=1)
    del model
    return {
        "name": name,
        **preset.taxonomy.as_dict(),
        "params": params,
        "params_m": _round(params / 1e6),
        "gmacs": _round(counts["macs"] / 1e9),
        "gflops": _round(counts["total"] / 1e9),
        "attn_gmacs": _round(counts["attention"] / 2e9),
        "img_size": preset.img_size,
        "tiny": preset.tiny,
        "paper": preset.paper,
    }


def summary_rows(pattern: str = "*", include_tiny: bool = False) -> list[dict]:
    """Rows of every preset matching the shell-style ``pattern``, sorted by name; tiny test variants only if
    ``include_tiny``."""
    return [preset_row(name) for name in list_models(pattern, include_tiny=include_tiny)]


def format_table(rows: list[dict], columns: tuple[str, ...] = COLUMNS, width: int = 72) -> str:
    """A plain-text table of ``rows`` (aligned columns, header and rule); an explanatory line if empty.
    Cells longer than ``width`` (the paper column) are cut with "…"; the JSON format keeps them whole."""
    if not rows:
        return "no registered model matches"
    cells = [[_clip(_cell(row[c]), width) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def format_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _round(value: float) -> float:
    """Four significant digits (tiny test models have ~1e-4 GMACs)."""
    return float(f"{value:.4g}")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)
