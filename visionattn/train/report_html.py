"""Figures and the self-contained HTML report of a training run (used by :class:`~visionattn.train.report.RunReporter`).

Everything is rendered off-screen with matplotlib's Agg canvas (a ``Figure`` object, never ``pyplot``, so no global
backend is switched) and PIL. The HTML embeds every image as a base64 ``data:`` URI and carries its own CSS: it
opens from a copied file, offline, with no external resource.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = [
    "atomic_write",
    "confusion_png",
    "curves_png",
    "image_png",
    "render_report",
]

_PNG_META = {"Software": None}  # matplotlib otherwise stamps its name and URL into every PNG


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path`` (never a half file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_META)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------------- curves
def _panel_of(name: str) -> str | None:
    low = name.lower()
    if "loss" in low:
        return "loss"
    if "acc" in low or low.startswith("top") or "_top" in low or "/top" in low:
        return "accuracy"
    if low == "lr" or low.startswith("lr") or low.endswith("lr") or "learning_rate" in low:
        return "learning rate"
    return None


def curves_png(x_name: str, columns: Mapping[str, Sequence[float]]) -> bytes:
    """Loss, accuracy and learning-rate curves against ``columns[x_name]`` (one panel each, panels without a column
    left out; when no column names a loss, accuracy or lr, all columns share one panel)."""
    xs = list(columns.get(x_name, []))
    panels: dict[str, list[str]] = {}
    for name in columns:
        if name == x_name:
            continue
        panel = _panel_of(name)
        if panel is not None:
            panels.setdefault(panel, []).append(name)
    order = ["loss", "accuracy", "learning rate"]
    titles = [p for p in order if p in panels]
    if not titles and len(columns) > 1:
        panels = {"metrics": [n for n in columns if n != x_name]}
        titles = ["metrics"]
    if not xs or not titles:
        fig = _figure(6, 2.5)
        fig.text(0.5, 0.5, "no epochs logged yet", ha="center", va="center", fontsize=14)
        return _png_bytes(fig)
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4.2 * len(titles), 3.4)
    axes = fig.subplots(1, len(titles), squeeze=False)[0]
    marker = "o" if len(xs) <= 30 else None
    for ax, title in zip(axes, titles, strict=True):
        for name in panels[title]:
            ys = [float("nan") if v is None else v for v in columns[name]]
            ax.plot(xs, ys, marker=marker, markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel(x_name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return _png_bytes(fig)


# ---------------------------------------------------------------------------------------------------- confusion
def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def confusion_png(confusion: np.ndarray, classes: Sequence[str]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted), coloured by the fraction of each row so rare
    classes read as clearly as common ones, with counts written in the cells when there are at most 20 classes."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.shape[0]
    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros_like(cm), where=row > 0)
    side = min(max(4.0, 0.45 * n + 2.5), 22.0)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    total = cm.sum()
    acc = np.trace(cm) / total if total > 0 else float("nan")
    ax.set_title(f"confusion matrix: {int(total)} samples, accuracy {acc:.2%}")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        ticks = np.arange(n)
        labels = [_short(c) for c in classes]
        ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels), default=0) > 2 else 0, ha="right"
                      if max(map(len, labels), default=0) > 2 else "center", fontsize=8 if n > 15 else 10)
        ax.set_yticks(ticks, labels, fontsize=8 if n > 15 else 10)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    return _png_bytes(fig)


# ------------------------------------------------------------------------------------------------------- images
def image_png(image, min_side: int = 96, max_side: int = 160) -> bytes:
    """A PNG of one image: (3, H, W), (1, H, W) or (H, W), float with values in [0, 1] (tensor or array).

    Display only: an image whose values fall outside [0, 1] (e.g. still normalised) is min-max rescaled rather than
    clipped; small images are enlarged with nearest-neighbour (8×8 digits stay crisp), large ones reduced.
    """
    from PIL import Image

    arr = image.detach().cpu().float().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"sample image: expected shape (3, H, W), (1, H, W) or (H, W), got {tuple(arr.shape)}")
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -0.01 or hi > 1.01:
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    arr = np.clip(arr, 0.0, 1.0)
    pixels = (arr.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    w, h = img.size
    short, long_ = min(w, h), max(w, h)
    if short < min_side:
        scale = max(1, math.ceil(min_side / short))
        scale = max(1, min(scale, max(1, (max_side * 2) // long_)))
        img = img.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    elif long_ > max_side:
        scale = max_side / long_
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;
color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.92em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f5f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.warn td{background:#fff4e0}
img.plot{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f5f5f7;padding:1em;overflow-x:auto;font-size:.85em;border-radius:4px}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.grid figure{margin:0;padding:4px;border:3px solid;border-radius:4px;text-align:center;font-size:.8em;width:min-content}
.grid figure.ok{border-color:#2e9e44}.grid figure.bad{border-color:#d03030;background:#fff0f0}
.grid img{image-rendering:pixelated;display:block;margin:0 auto}
.grid figcaption{white-space:nowrap;margin-top:3px}
.ok .mark{color:#2e9e44;font-weight:bold}.bad .mark{color:#d03030;font-weight:bold}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value)}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.1f}"
    return str(value)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _is_warning(key: str, value) -> bool:
    low = key.lower()
    flagged = any(w in low for w in ("skip", "non_finite", "nonfinite", "non-finite", "nan", "error", "fail"))
    if not flagged:
        return False
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return value > 0
    if isinstance(value, Sequence | Mapping) and not isinstance(value, str):
        return len(value) > 0
    return bool(value)


def _summary_value(value) -> str:
    if isinstance(value, Mapping):
        rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_summary_value(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, str | bytes):
        items = list(value)
        if not items:
            return "none"
        shown = items[:200]
        more = f"<li>… and {len(items) - len(shown)} more</li>" if len(items) > len(shown) else ""
        lis = "".join(f"<li>{_esc(_fmt(v))}</li>" for v in shown)
        return f"<details><summary>{len(items)} item(s)</summary><ul>{lis}{more}</ul></details>"
    return _esc(_fmt(value))


def _summary_section(summary: Mapping) -> str:
    if not summary:
        return "<p>no summary given</p>"
    rows = []
    for key, value in summary.items():
        cls = ' class="warn"' if _is_warning(str(key), value) else ""
        rows.append(f"<tr{cls}><th>{_esc(key)}</th><td>{_summary_value(value)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _metrics_section(x_name: str, columns: Mapping[str, Sequence]) -> str:
    xs = list(columns.get(x_name, []))
    if not xs:
        return "<p>no epochs logged</p>"
    head = (f"<tr><th>metric</th><th>final ({_esc(x_name)} {_esc(_fmt(xs[-1]))})</th>"
            f"<th>best</th><th>at {_esc(x_name)}</th></tr>")
    rows = []
    for name, values in columns.items():
        if name == x_name:
            continue
        final = values[-1]
        panel = _panel_of(name)
        best = at = ""
        numeric = [(v, x) for v, x in zip(values, xs, strict=False)
                   if isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v)]
        if numeric and panel in ("loss", "accuracy"):
            pick = min if panel == "loss" else max
            bv, bx = pick(numeric, key=lambda t: t[0])
            best, at = _fmt(bv), _fmt(bx)
        rows.append(f'<tr><th>{_esc(name)}</th><td class="num">{_esc(_fmt(final))}</td>'
                    f'<td class="num">{_esc(best)}</td><td class="num">{_esc(at)}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _per_class_section(confusion: np.ndarray, classes: Sequence[str]) -> str:
    cm = np.asarray(confusion, dtype=np.int64)
    support = cm.sum(axis=1)
    correct = np.diag(cm)
    predicted = cm.sum(axis=0)
    rows = []
    for i, name in enumerate(classes):
        recall = correct[i] / support[i] if support[i] else float("nan")
        precision = correct[i] / predicted[i] if predicted[i] else float("nan")
        rows.append(f'<tr><th>{_esc(name)}</th><td class="num">{support[i]}</td><td class="num">{correct[i]}</td>'
                    f'<td class="num">{_esc(_fmt(recall))}</td><td class="num">{_esc(_fmt(precision))}</td></tr>')
    table = ("<table><tr><th>class</th><th>samples</th><th>correct</th><th>accuracy (recall)</th>"
             f"<th>precision</th></tr>{''.join(rows)}</table>")
    return f"<details{' open' if len(classes) <= 20 else ''}><summary>per-class accuracy</summary>{table}</details>"


def _samples_section(samples: Sequence[tuple], classes: Sequence[str]) -> str:
    if not samples:
        return "<p>no validation samples given</p>"
    figs = []
    n_ok = 0
    for image, true, pred in samples:
        ok = true == pred
        n_ok += ok
        mark = "✓" if ok else "✗"
        caption = (f'<span class="mark">{mark}</span> true: {_esc(classes[true])}'
                   + ("" if ok else f"<br>pred: {_esc(classes[pred])}"))
        title = f"true {classes[true]}, predicted {classes[pred]}"
        figs.append(f'<figure class="{"ok" if ok else "bad"}"><img src="{_data_uri(image_png(image))}" '
                    f'alt="{_esc(title)}" title="{_esc(title)}"><figcaption>{caption}</figcaption></figure>')
    return (f"<p>{n_ok} of {len(samples)} shown predictions are right (green ✓); wrong ones (red ✗) show the "
            f"predicted class.</p><div class=\"grid\">{''.join(figs)}</div>")


def render_report(*, title: str, x_name: str, columns: Mapping[str, Sequence], summary: Mapping, config_yaml: str,
                  curves: bytes, confusion_plot: bytes | None, confusion: np.ndarray | None, classes: Sequence[str],
                  samples: Sequence[tuple]) -> str:
    """The report as one HTML string: final metrics, summary, curves, confusion matrix, validation samples, config.
    ``samples`` are ``(image, true_index, predicted_index)`` with validated integer indices."""
    import importlib.metadata

    import torch

    try:
        version = importlib.metadata.version("visionattn")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    if confusion is not None and confusion_plot is not None:
        confusion_html = (f'<img class="plot" src="{_data_uri(confusion_plot)}" alt="confusion matrix">'
                          + _per_class_section(confusion, classes))
    else:
        confusion_html = "<p>no confusion matrix given</p>"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)} — visionattn run report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">visionattn {_esc(version)} · torch {_esc(torch.__version__)} · {len(classes)} classes'
        f" · report written {_esc(when)}</p>",
        "<h2>Final metrics</h2>",
        _metrics_section(x_name, columns),
        "<h2>Run summary</h2>",
        _summary_section(summary),
        "<h2>Training curves</h2>",
        f'<img class="plot" src="{_data_uri(curves)}" alt="training curves">',
        "<h2>Confusion matrix (validation)</h2>",
        confusion_html,
        "<h2>Validation samples</h2>",
        _samples_section(samples, classes),
        "<h2>Configuration</h2>",
        f"<pre>{_esc(config_yaml)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
