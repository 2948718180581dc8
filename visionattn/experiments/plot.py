"""Plots of an experiment's summary (matplotlib, Agg backend, PNG files).

* no sweep: ``<name>.png``, a bar per variant at the mean of the headline metric, error bar ± std, one dot per seed;
* a sweep: ``<name>.png``, one line per variant through the means against the sweep's first key, error bars ± std,
  seeds as faint dots;
* ``plot.x`` set to a metric key (or a list of them): also ``<name>_tradeoff.png``, the headline metric against
  that metric (e.g. accuracy vs measured img/s; one panel per key), a point per variant with error bars both ways.
"""

from __future__ import annotations

from pathlib import Path

from .results import Group, is_percent

__all__ = ["plot_summary"]


def _scale(key: str) -> float:
    return 100.0 if is_percent(key) else 1.0


def _label(key: str) -> str:
    return f"{key} (%)" if is_percent(key) else key


def plot_summary(groups: list[Group], metric: str, out_dir: Path, name: str, x_key: str | None = None,
                 options: dict | None = None) -> list[Path]:
    """Write the plot(s) described in the module docstring into ``out_dir``; returns their paths. Groups without a
    finished run are left out of the plots (the table lists them)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    options = options or {}
    s = _scale(metric)
    done = [g for g in groups if g.mean is not None]
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    variants = list(dict.fromkeys(g.variant for g in groups))
    if x_key:
        for i, variant in enumerate(variants):
            mine = [g for g in done if g.variant == variant]
            if not mine:
                continue
            xs = [float(g.x) for g in mine]
            color = f"C{i % 10}"
            ax.errorbar(xs, [s * g.mean for g in mine], yerr=[s * (g.std or 0.0) for g in mine], marker="o",
                        capsize=3, label=variant, color=color)
            for g in mine:
                ax.scatter([float(g.x)] * g.n, [s * v for v in g.values.values()], s=8, alpha=0.35, color=color)
        ax.set_xlabel(options.get("xlabel", x_key))
        ax.set_xscale(options.get("xscale", "linear"))
        ticks = sorted({float(g.x) for g in done})
        if ticks:  # the sweep's values, written as they are (no 3x10^-1 on a log axis)
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        if done:
            ax.legend(fontsize=8)
    else:
        xs = range(len(done))
        ax.bar(xs, [s * g.mean for g in done], yerr=[s * (g.std or 0.0) for g in done], capsize=4,
               color=[f"C{variants.index(g.variant) % 10}" for g in done], alpha=0.8)
        for i, g in enumerate(done):
            ax.scatter([i] * g.n, [s * v for v in g.values.values()], s=10, color="black", zorder=3)
        ax.set_xticks(list(xs), [g.variant for g in done], rotation=20, ha="right")
        if done and options.get("yscale") == "log":
            ax.set_yscale("log")
        elif done:  # bars start at 0; zoom to where the results are so that differences show
            lo = min(min(g.values.values()) for g in done) * s
            hi = max(max(g.values.values()) for g in done) * s
            pad = max((hi - lo) * 0.5, 0.5 if is_percent(metric) else abs(hi) * 0.01 + 1e-9)
            ax.set_ylim(lo - pad, hi + pad)
    if x_key and options.get("yscale") == "log":
        ax.set_yscale("log")
    ax.set_ylabel(options.get("ylabel", _label(metric)))
    ax.set_title(options.get("title", name), fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)

    x_metrics = options.get("x") or []
    x_metrics = [x_metrics] if isinstance(x_metrics, str) else list(x_metrics)
    if x_metrics:
        fig, axes = plt.subplots(1, len(x_metrics), figsize=(5.5 * len(x_metrics), 4.2), dpi=120, squeeze=False)
        for ax, x_metric in zip(axes[0], x_metrics, strict=True):
            sx = _scale(x_metric)
            for g in done:
                mean, std, _n = g.extras.get(x_metric, (None, None, 0))
                if mean is None:
                    continue
                ax.errorbar([sx * mean], [s * g.mean], xerr=[sx * (std or 0.0)], yerr=[s * (g.std or 0.0)],
                            marker="o", capsize=3, color=f"C{variants.index(g.variant) % 10}")
                ax.annotate(g.variant, (sx * mean, s * g.mean), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel(_label(x_metric))
            ax.set_ylabel(options.get("ylabel", _label(metric)))
            ax.set_title(f"{metric} vs {x_metric}", fontsize=10)
            ax.set_yscale(options.get("yscale", "linear"))
            ax.grid(alpha=0.3)
        fig.suptitle(options.get("title", name), fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{name}_tradeoff.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
