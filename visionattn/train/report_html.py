"""Figures and the self-contained HTML report of a training run (used by :class:`~visionattn.train.report.RunReporter`).

Everything is rendered off-screen with matplotlib's Agg canvas (a ``Figure`` object, never ``pyplot``, so no global
backend is switched) and PIL. The HTML embeds every image as a base64 ``data:`` URI and carries its own CSS: it
opens from a copied file, offline, with no external resource.
"""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from ..plotting import figure as _figure
from ..plotting import png_bytes as _png_bytes

__all__ = [
    "atomic_write",
    "curves_png",
    "render_report",
]


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


def _table(rows: Sequence[Mapping]) -> str:
    if not rows:
        return "<p>(empty table)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{_esc(k)}</th>" for k in keys)
    body = []
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            numeric = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            cells.append(f'<td class="num">{_esc(_fmt(v))}</td>' if numeric else f"<td>{_esc(_fmt(v))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    table = f"<table><tr>{head}</tr>{''.join(body)}</table>"
    return table if len(rows) <= 20 else f"<details><summary>{len(rows)} rows</summary>{table}</details>"


def _grid(grid) -> str:
    figs = []
    for cell in grid:
        cls = "" if cell.ok is None else (' class="ok"' if cell.ok else ' class="bad"')
        figs.append(f'<figure{cls}><img src="{_data_uri(cell.png)}" alt="{_esc(cell.caption)}" '
                    f'title="{_esc(cell.caption)}"><figcaption>{_esc(cell.caption)}</figcaption></figure>')
    return f'<div class="grid">{"".join(figs)}</div>'


def _item_section(item) -> str:
    """One :class:`visionattn.tasks.ReportItem`: title, text, picture, table, grid (whichever it has)."""
    parts = [f"<h2>{_esc(item.title)}</h2>"]
    if item.text:
        parts.append(f"<p>{_esc(item.text)}</p>")
    if item.png is not None:
        parts.append(f'<img class="plot" src="{_data_uri(item.png)}" alt="{_esc(item.title)}">')
    if item.table is not None:
        parts.append(_table(item.table))
    if item.grid:
        parts.append(_grid(item.grid))
    return "\n".join(parts)


def render_report(*, title: str, x_name: str, columns: Mapping[str, Sequence], summary: Mapping, config_yaml: str,
                  curves: bytes, items: Sequence = ()) -> str:
    """The report as one HTML string: final metrics, summary, curves, the task's sections (``items``, each a
    :class:`visionattn.tasks.ReportItem`), config."""
    import importlib.metadata

    import torch

    try:
        version = importlib.metadata.version("visionattn")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    task = summary.get("task")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)} — visionattn run report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">visionattn {_esc(version)} · torch {_esc(torch.__version__)}'
        + (f" · task {_esc(task)}" if task else "") + f" · report written {_esc(when)}</p>",
        "<h2>Final metrics</h2>",
        _metrics_section(x_name, columns),
        "<h2>Run summary</h2>",
        _summary_section(summary),
        "<h2>Training curves</h2>",
        f'<img class="plot" src="{_data_uri(curves)}" alt="training curves">',
        *(_item_section(item) for item in items),
        "<h2>Configuration</h2>",
        f"<pre>{_esc(config_yaml)}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
