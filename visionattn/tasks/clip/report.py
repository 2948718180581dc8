"""The CLIP task's text and pictures: evaluation against chance, images beside their top-5 texts, the zero-shot
confusion matrix of the held-out categories."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...plotting import figure, png_bytes
from ..base import Evaluation, ReportItem, TaskData
from .metrics import KS

__all__ = ["format_clip_evaluation", "report_items", "top_texts_png", "metric_rows"]


def metric_rows(evaluation: Evaluation) -> list[dict]:
    """One row per number: what, measured, chance."""
    rows = []
    result = evaluation.details.get("retrieval") if isinstance(evaluation.details, dict) else None
    chance = result.chance() if result is not None else {}
    for direction, label in (("i2t", "image→text"), ("t2i", "text→image")):
        for k in KS:
            key = f"{direction}_r{k}"
            if key in evaluation.metrics:
                rows.append({"metric": f"{label} R@{k}", "value": evaluation.metrics[key],
                             "chance": chance.get(key, float("nan"))})
    if "mean_recall" in evaluation.metrics:
        rows.append({"metric": "mean recall (primary)", "value": evaluation.metrics["mean_recall"],
                     "chance": chance.get("mean_recall", float("nan"))})
    for key, value in evaluation.metrics.items():
        for suffix, label in (("_top1", "top-1"), ("_balanced", "balanced")):
            if key.startswith("zs_") and key.endswith(suffix):
                name = key[3:-len(suffix)]
                details = evaluation.details.get(name) if isinstance(evaluation.details, dict) else None
                classes = details.confusion.shape[0] if details is not None else 0
                rows.append({"metric": f"zero-shot {name} {label}", "value": value,
                             "chance": 1 / classes if classes else float("nan")})
    return rows


def format_clip_evaluation(evaluation: Evaluation, meta: dict) -> str:
    """A table of every metric beside its chance level, then the zero-shot sets' class lists."""
    rows = metric_rows(evaluation)
    width = max(len(r["metric"]) for r in rows)
    lines = [f"{'metric':<{width}}  {'value':>7}  {'chance':>7}"]
    lines += [f"{r['metric']:<{width}}  {100 * r['value']:>6.2f}%  {100 * r['chance']:>6.2f}%" for r in rows]
    result = evaluation.details.get("retrieval") if isinstance(evaluation.details, dict) else None
    if result is not None:
        lines.append(f"\nretrieval over {result.similarity.shape[0]} images and {result.similarity.shape[1]} captions")
    for name, classes in (meta.get("zero_shot") or {}).items():
        details = evaluation.details.get(name) if isinstance(evaluation.details, dict) else None
        count = f"{details.count} images, " if details is not None else ""
        lines.append(f"zero-shot {name}: {count}{len(classes)} classes: {', '.join(classes)}")
    return "\n".join(lines)


def top_texts_png(images: Sequence[np.ndarray], ranked: Sequence[Sequence[tuple[str, float, bool | None]]],
                  title: str = "") -> bytes:
    """Each image (uint8 ``(H, W, 3)``) beside its ranked texts ``(text, score, right)``: green when ``right`` is
    True, red when False, black when None."""
    n = len(images)
    fig = figure(11.0, 1.55 * n + 0.4)
    grid = fig.add_gridspec(n, 2, width_ratios=[1, 6])
    colour = {True: "#1a7f37", False: "#b42318", None: "black"}
    for i, (image, texts) in enumerate(zip(images, ranked, strict=True)):
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax = fig.add_subplot(grid[i, 1])
        ax.set_axis_off()
        for j, (text, score, right) in enumerate(texts):
            short = textwrap.shorten(text, width=105, placeholder=" …")
            ax.text(0.0, 1.0 - j / max(len(texts), 1), f"{j + 1}. {score:5.1f}%  {short}", va="top", fontsize=8.5,
                    color=colour[right], transform=ax.transAxes, family="monospace")
    if title:
        fig.suptitle(title, fontsize=10)
    return png_bytes(fig)


def _display(data: TaskData, i: int) -> np.ndarray:
    from ...data.transforms import denormalize_with
    from ...plotting import to_uint8_hwc

    image = data.val[i]["image"]
    return to_uint8_hwc(denormalize_with(image, data.meta["mean"], data.meta["std"]))


def _distinct_top(texts: Sequence[str], logits: torch.Tensor, own: set[str], k: int = 5):
    """The ``k`` most probable distinct texts (softmax over all; identical captions of several images pooled, shown
    as ``text (×n)``) as ``(text, percent, is one of its own captions)``."""
    probs = logits.float().softmax(dim=0)
    pooled: dict[str, list] = {}
    for j in probs.argsort(descending=True).tolist():
        entry = pooled.setdefault(texts[j], [0.0, 0])
        entry[0] += 100 * float(probs[j])
        entry[1] += 1
    top = sorted(pooled.items(), key=lambda kv: -kv[1][0])[:k]
    return [(text if n == 1 else f"(×{n}) {text}", p, text in own) for text, (p, n) in top]


@torch.no_grad()
def report_items(model: nn.Module, data: TaskData, evaluation: Evaluation | None, device: torch.device,
                 count: int = 6) -> list[ReportItem]:
    """The metrics beside chance, ``count`` validation images with their top-5 distinct validation captions (its own
    caption green, others red; from the evaluation's similarities, softmax at the model's logit scale) and the
    held-out confusion matrix."""
    items = []
    if evaluation is None:
        return items
    items.append(ReportItem("Retrieval and zero-shot (validation) vs chance", table=metric_rows(evaluation)))
    result = evaluation.details.get("retrieval")
    if result is not None:
        step = max(1, len(data.val) // count)
        chosen = list(range(0, step * count, step))[:count]
        flat = [c for i in range(len(data.val)) for c in data.val.captions(i)]
        scale = float(evaluation.metrics.get("logit_scale", 100.0))
        ranked = [_distinct_top(flat, torch.as_tensor(result.similarity[i]) * scale, set(data.val.captions(i)))
                  for i in chosen]
        png = top_texts_png([_display(data, i) for i in chosen], ranked,
                            f"validation images and their top-5 of {len(set(flat))} distinct validation captions "
                            f"(green: its own; ×k: k images share the caption)")
        items.append(ReportItem("Top-5 captions of validation images", png=png, filename="retrieval_top5.png"))
    held = evaluation.details.get("heldout")
    if held is not None:
        from ..classification.report import confusion_png

        classes = list(data.meta["zero_shot"]["heldout"])
        items.append(ReportItem("Zero-shot confusion: held-out categories", png=confusion_png(held.confusion, classes),
                                filename="zeroshot_heldout_confusion.png"))
    return items
