"""``visionattn predict`` for a CLIP checkpoint: each image's texts ranked by similarity.

Texts: the ``--text`` phrases as given, or, without any, the labels the run knows (its held-out categories and the
category folders it trained on) through the prompt-template ensemble. Scores are the softmax over the texts of the
logit-scaled cosine similarities (the model's own temperature). ``--out DIR`` also writes ``predictions.png``
(images beside their top texts) and ``predictions.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..base import PredictOptions, PredictOutput
from .tokenizer import ClipTokenizer
from .zeroshot import class_embeddings

__all__ = ["predict_texts"]


@torch.no_grad()
def predict_texts(model: nn.Module, meta: dict, transform, inputs: Sequence[str], options: PredictOptions,
                  tokenizer: ClipTokenizer, templates: Sequence[str], device: torch.device) -> PredictOutput:
    from ...data import BadImage, load_image
    from .report import top_texts_png

    if options.top_k < 1:
        raise ValueError(f"top_k: expected >= 1, got {options.top_k}")
    model.to(device).eval()
    if options.texts:
        texts = list(options.texts)
        weights = model(tokens=tokenizer(texts).to(device)).text.float()
    else:
        texts = list(dict.fromkeys([*meta.get("heldout_classes", []), *meta.get("known_classes", [])]))
        if not texts:
            raise ValueError("this checkpoint knows no labels; give texts with --text")
        weights = class_embeddings(model, texts, templates, tokenizer, device)
    k = min(options.top_k, len(texts))
    lines: list[str | None] = [None] * len(inputs)
    errors, shown, ranked_all, records = 0, [], [], []
    for start in range(0, len(inputs), options.batch_size):
        batch, kept = [], []
        for i, path in enumerate(inputs[start:start + options.batch_size], start=start):
            try:
                image = load_image(path)
            except BadImage as err:
                lines[i] = f"{path}: error: {err.reason}"
                errors += 1
                continue
            batch.append(transform(image))
            kept.append((i, path, image))
        if not batch:
            continue
        out = model(images=torch.stack(batch).to(device))
        probs = (out.logit_scale * out.image.float() @ weights.t()).softmax(dim=-1).cpu()
        for (i, path, image), row in zip(kept, probs, strict=True):
            top = row.topk(k)
            ranked = [(texts[j], 100 * float(p)) for p, j in zip(top.values.tolist(), top.indices.tolist(),
                                                                  strict=True)]
            lines[i] = f"{path}: " + "  ".join(f"{t} {p:.1f}%" for t, p in ranked)
            records.append({"image": str(path), "texts": [{"text": t, "percent": round(p, 2)} for t, p in ranked]})
            shown.append(np.asarray(image.resize((96, 96))))
            ranked_all.append([(t, p, None) for t, p in ranked])
    files = []
    if options.out_dir is not None and records:
        out_dir = Path(options.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "predictions.png"
        png.write_bytes(top_texts_png(shown, ranked_all, f"top-{k} of {len(texts)} texts"))
        js = out_dir / "predictions.json"
        js.write_text(json.dumps(records, indent=2) + "\n")
        files = [png, js]
    return PredictOutput([line for line in lines if line is not None], errors=errors, files=files)
