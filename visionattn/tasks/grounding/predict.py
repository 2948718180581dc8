"""``visionattn predict CKPT IMAGE --text "the 7" --out DIR`` for a grounding checkpoint, and the report's example
grid.

For each image and each ``--text`` the phrase is the whole text; every query's score is the task's ``score``:
the probability mass it puts on the phrase's tokens (:func:`.metrics.phrase_scores`) or its contrastive alignment
with them (:func:`.metrics.align_scores`); the boxes whose score reaches ``threshold`` are the
grounded boxes (at most ``top_k``; the best one is printed even below the threshold, marked). ``--out DIR`` writes
``DIR/<stem>-<n>.png`` with the boxes drawn by ``torchvision.utils.draw_bounding_boxes`` and the phrase in the
file's name list ``DIR/grounding.json``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.utils import draw_bounding_boxes

from ..base import GridImage, PredictOptions, PredictOutput, ReportItem
from ..batching import pad_images
from ..detection.transforms import build_detection_transform
from .metrics import align_scores, phrase_scores

__all__ = ["predict_files", "ground", "grounding_examples"]


@torch.no_grad()
def ground(model: nn.Module, image: torch.Tensor, text: str, tokenizer, device, score: str = "token",
           temperature: float = 0.07) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised image ``(3, H, W)`` and a phrase → ``(scores (N,), boxes (N, 4) xyxy pixels)`` sorted by
    score."""
    if not text.strip():
        raise ValueError("grounding: the phrase is empty; expected text such as 'the 7'")
    x, mask = pad_images([image], int(getattr(model, "size_multiple", 32)))
    ids, offsets = tokenizer.encode(text)
    unknown = [text[a:b] for i, (a, b) in zip(ids, offsets, strict=True) if i == tokenizer.unk_id]
    tokens = torch.tensor([ids], device=device)
    out = model(x.to(device), mask.to(device), tokens, tokens == tokenizer.pad_id)
    phrase = tokenizer.positive_map(offsets, [(0, len(text))], text).to(device)
    scores = phrase_scores(out.logits[0], phrase) if score == "token" else align_scores(
        out.queries[0], out.tokens[0], phrase, temperature)
    h, w = image.shape[-2:]
    boxes = box_convert(out.boxes[0].float(), "cxcywh", "xyxy") * torch.tensor([w, h, w, h], device=device)
    order = scores.argsort(descending=True)
    if unknown:
        print(f"grounding: words unknown to the checkpoint's vocabulary: {unknown}")
    return scores[order].cpu(), boxes[order].cpu()


def _draw(raw: torch.Tensor, boxes, labels, colors) -> torch.Tensor:
    return draw_bounding_boxes(raw, boxes.float(), labels=labels, colors=colors, width=2) if len(boxes) else raw


@torch.no_grad()
def predict_files(model: nn.Module, meta: dict, tokenizer, paths: Sequence[str], options: PredictOptions,
                  threshold: float, device: torch.device, score: str = "token",
                  temperature: float = 0.07) -> PredictOutput:
    from PIL import Image

    from ...data import BadImage, load_image

    if not options.texts:
        raise ValueError("grounding predict needs at least one --text PHRASE (e.g. --text 'the 7')")
    transform = build_detection_transform(False, meta["mean"], meta["std"])
    model.to(device).eval()
    out_dir = Path(options.out_dir) if options.out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    lines, files, results, errors = [], [], [], 0
    for path in paths:
        try:
            pil = load_image(path)
        except BadImage as err:
            lines.append(f"{path}: error: {err.reason}")
            errors += 1
            continue
        raw = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)
        image = transform(tv_tensors.Image(raw)).as_subclass(torch.Tensor)
        H, W = raw.shape[-2:]
        for n, text in enumerate(options.texts):
            scores, boxes = ground(model, image, text, tokenizer, device, score, temperature)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
            keep = (scores >= threshold).nonzero().flatten()[: options.top_k]
            found = "  ".join(f"{s:.2f} [{', '.join(f'{v:.0f}' for v in b.tolist())}]"
                              for s, b in zip(scores[keep].tolist(), boxes[keep], strict=True))
            best = f"(none >= {threshold}; best {scores[0]:.2f} [{', '.join(f'{v:.0f}' for v in boxes[0].tolist())}])"
            lines.append(f"{path}: {text!r}: {len(keep)} box{'es' if len(keep) != 1 else ''}: "
                         f"{found if len(keep) else best}")
            results.append({"file": str(path), "text": text, "boxes": boxes[keep].tolist(),
                            "scores": scores[keep].tolist()})
            if out_dir is not None:
                drawn = _draw(raw, boxes[keep], [f"{text} {s:.2f}" for s in scores[keep].tolist()], "red")
                target = out_dir / f"{Path(path).stem}-{n}.png"
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(target)
                files.append(target)
    if out_dir is not None:
        (out_dir / "grounding.json").write_text(json.dumps(results, indent=1) + "\n")
        files.append(out_dir / "grounding.json")
    return PredictOutput(lines, errors=errors, files=files)


@torch.no_grad()
def grounding_examples(model: nn.Module, data, device: torch.device, count: int = 12, scale: int = 3,
                       score: str = "token", temperature: float = 0.07) -> ReportItem:
    """A grid of validation images: the ground truth of the caption's first phrase in green, the top-1 box in
    red (frame green when IoU >= 0.5)."""
    from PIL import Image
    from torchvision.ops import box_iou

    from ...data.transforms import denormalize_with

    model.eval()
    grid = []
    for i in range(min(count, len(data.val))):
        batch = data.collate([data.val[i]])
        t = batch["target"][0]
        out = model(batch["image"].to(device), batch["padding_mask"].to(device), batch["tokens"].to(device),
                    batch["text_padding"].to(device))
        p = t["phrases"][0]
        phrase = p["tokens"].to(device)
        scores = phrase_scores(out.logits[0], phrase) if score == "token" else align_scores(
            out.queries[0], out.tokens[0], phrase, temperature)
        h, w = (int(v) for v in t["size"])
        boxes = box_convert(out.boxes[0].float(), "cxcywh", "xyxy").cpu() * torch.tensor([w, h, w, h])
        best = boxes[int(scores.argmax())][None]
        gt = t["orig_boxes"][p["boxes"]]
        ok = bool(box_iou(best, gt).max() >= 0.5)
        img = denormalize_with(data.val[i]["image"][None], data.meta["mean"], data.meta["std"])[0]
        raw = (img.clamp(0, 1) * 255).to(torch.uint8)
        raw = torch.nn.functional.interpolate(raw[None].float(), scale_factor=scale).to(torch.uint8)[0]
        drawn = draw_bounding_boxes(raw, gt * scale, colors="lime", width=2)
        drawn = draw_bounding_boxes(drawn, best * scale, colors="red", width=2)
        buf = io.BytesIO()
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(buf, format="PNG")
        grid.append(GridImage(buf.getvalue(), f"{t['caption']} ({scores.max():.2f})", ok))
    return ReportItem("Grounded phrases (green: ground truth, red: top-1)", grid=grid)
