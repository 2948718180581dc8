"""The DINO run report: frozen-feature scores against baselines, and attention maps of the DINO teacher next to
the same architecture at random init (with their DINO-style masks).

Baselines (``task.report_baselines``, labelled data): the same backbone + head at the initialisation the run
started from, and raw pixels, scored with the same k-NN and probe on the same bank and validation images.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ...comm import LOCAL
from ..base import EvalContext, Evaluation, ReportItem
from .evaluation import DinoDetails, extract, pixel_features, score_features
from .masks import attention_maps

__all__ = ["format_eval", "report_items", "baseline_rows", "attention_figure_png"]

_SCORES = ("knn_top1", "knn_top5", "linear_top1")


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def format_eval(evaluation: Evaluation) -> str:
    """Text for ``visionattn eval``: the scores, the teacher statistics and any collapse warning."""
    m, d = evaluation.metrics, evaluation.details
    lines = []
    if isinstance(d, DinoDetails) and d.bank:
        lines.append(f"frozen features: {d.val} validation images vs a bank of {d.bank} ({d.classes} classes)")
    elif isinstance(d, DinoDetails):
        lines.append(f"{d.val} validation images, no labels: no k-NN or linear probe")
    lines.append("   ".join(f"{k}: {_pct(m[k])}" for k in _SCORES if k in m))
    lines.append(f"teacher entropy {m['teacher_entropy']:.3f} nats, KL(mean output || uniform) "
                 f"{m['teacher_kl_uniform']:.3f}")
    if isinstance(d, DinoDetails) and d.collapse:
        lines.append(f"warning: {d.collapse}")
    return "\n".join(lines)


def _context(device: torch.device) -> EvalContext:
    def loader(dataset):
        return DataLoader(dataset, batch_size=256, shuffle=False), None

    return EvalContext(device, "fp32", LOCAL, loader)


@torch.no_grad()
def baseline_rows(task, net: nn.Module, data, evaluation: Evaluation | None, device: torch.device) -> list[dict]:
    """Table rows (method, knn_top1, knn_top5, linear_top1, as percentages): DINO (from ``evaluation``), the
    random-init model and raw pixels; [] for unlabeled data."""
    if getattr(data, "bank", None) is None or evaluation is None or math.isnan(evaluation.metrics["knn_top1"]):
        return []
    o, ctx = task.options, _context(device)
    rows = [{"features": "DINO teacher ([CLS] / pooled)", **{k: _pct(evaluation.metrics.get(k)) for k in _SCORES}}]
    random_net = task.random_init_model(data.meta).to(device).eval()
    pixels = pixel_features(data.meta["mean"], data.meta["std"])
    for name, fn in (("same architecture, random init", random_net.features), ("raw pixels", pixels)):
        (bank_f,), bank_y = extract(fn, data.bank, ctx)
        (val_f,), val_y = extract(fn, data.val, ctx)
        classes = max(len(data.meta.get("label_names") or []), int(bank_y.max()) + 1)
        scores = score_features(bank_f, bank_y, val_f, val_y, classes, o.knn_k, o.knn_temperature, o.linear_probe)
        rows.append({"features": name, **{k: _pct(scores.get(k)) for k in _SCORES}})
    return rows


def attention_figure_png(images: Tensor, shown: Tensor, models: list[tuple[str, nn.Module]], fraction: float = 0.6
                         ) -> bytes | None:
    """One PNG: a row per image — the input, then per model its head-mean [CLS] attention and its mask keeping
    ``fraction`` of the mass. None when no model has a mappable attention layer."""
    from ...plotting import figure, png_bytes

    found = [(name, attention_maps(m, images, fraction)) for name, m in models]
    found = [(name, a) for name, a in found if a is not None]
    if not found:
        return None
    n = images.shape[0]
    cols = 1 + 2 * len(found)
    fig = figure(1.6 * cols, 1.6 * n + 0.3)
    axes = fig.subplots(n, cols, squeeze=False)
    for b in range(n):
        rgb = shown[b].permute(1, 2, 0).cpu().numpy()
        gray = rgb.mean(-1)
        axes[b, 0].imshow(rgb)
        for j, (name, a) in enumerate(found):
            attn = a.maps[b].mean(0).cpu().numpy()
            ax = axes[b, 1 + 2 * j]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
            ax.imshow(attn / max(float(attn.max()), 1e-12), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            mask = a.masks[b, 0].cpu().numpy()
            axes[b, 2 + 2 * j].imshow(rgb * (0.35 + 0.65 * mask[..., None]))
            if b == 0:
                query = "[CLS]" if a.query == "cls" else "centre"
                ax.set_title(f"{name}\n{query} attention", fontsize=7)
                axes[b, 2 + 2 * j].set_title(f"{name}\nmask {round(100 * fraction)}% mass", fontsize=7)
    axes[0, 0].set_title("input", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    return png_bytes(fig)


def report_items(task, net: nn.Module, data, evaluation: Evaluation | None, device: torch.device
                 ) -> list[ReportItem]:
    """The report sections: the scores table (with baselines) and the attention picture (``dino_attention.png``)."""
    items = []
    if evaluation is not None:
        text = format_eval(evaluation).replace("\n", "; ")
        rows = baseline_rows(task, net, data, evaluation, device) if task.options.report_baselines else []
        items.append(ReportItem("Frozen features: k-NN and linear probe", text=text, table=rows or None))
    inputs = task.report_inputs(data, 6)
    if inputs is not None:
        x, shown = inputs
        x = x.to(device)
        random_net = task.random_init_model(data.meta).to(device)
        png = attention_figure_png(x, shown, [("DINO", net.backbone), ("random init", random_net.backbone)])
        if png is not None:
            items.append(ReportItem(
                "Attention maps: DINO vs random init",
                text="Last attention layer, mean of the heads, of the DINO teacher and of the same architecture at "
                     "the run's initialisation, on validation images; the masks keep the smallest set of patches "
                     "holding 60% of the attention mass (the paper's visualisation).",
                png=png, filename="dino_attention.png"))
    return items

