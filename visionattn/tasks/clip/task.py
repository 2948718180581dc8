"""Image–text contrastive learning (CLIP): ``task.name: clip``.

Batches ``{"image": (B, 3, H, W), "tokens": B x (1, L) ids, "index": (B,)}``; the model is a :class:`CLIPModel`
(image tower = the ``model:`` preset with a projection, text tower = ``task.text_model``); the loss is the symmetric
InfoNCE over the global batch (:mod:`.loss`). Evaluation: image↔text Recall@1/5/10 on the validation pairs (primary:
``mean_recall``, the mean of the six) and zero-shot top-1 and balanced accuracy (mean per-class recall; chance
1/classes however unequal the classes) on each zero-shot set (``zs_<set>_top1``, ``zs_<set>_balanced``).

Why ``mean_recall`` is the primary metric (which picks ``best.pt``): it is what the contrastive objective trains,
measured on every validation pair in both directions, so it moves smoothly; the zero-shot accuracies must stay out of
checkpoint selection, or the held-out categories would become a validation set instead of a test of transfer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...data import DataConfig, build_transform
from ...data.captions import CAPTION_DATASETS, load_caption_source
from ...data.config import warn_skipped
from ...models.config import ModelConfig, model_kwargs
from ..base import Evaluation, LossOutput, PredictOptions, PredictOutput, ReportItem, StepContext, Task, TaskData
from ..runtime import run_evaluation
from .data import (
    CaptionedImages,
    cap_per_caption,
    collate_clip,
    split_items,
    stack_tokens,
    tokenize_captions,
)
from .loss import clip_loss
from .metrics import RetrievalMetric
from .model import CLIPModel
from .options import ClipOptions
from .tokenizer import get_tokenizer
from .zeroshot import class_embeddings, heldout_zero_shot_set, package_zero_shot_set

__all__ = ["ClipTask"]


def _clean(folder: str) -> str:
    return folder.rsplit("/", 1)[-1].replace("_", " ")


class ClipTask(Task):
    name = "clip"
    options_class = ClipOptions
    primary_metric = "mean_recall"
    higher_is_better = True
    default_config = "clip_openclipart.yaml"
    datasets = tuple(CAPTION_DATASETS)

    def __init__(self, options: ClipOptions | None = None):
        super().__init__(options)
        self.tokenizer = get_tokenizer(self.options.context_length)

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        o = self.options
        if data.name not in CAPTION_DATASETS:
            raise ValueError(f"task clip trains on image-caption data: data.name expected one of "
                             f"{list(CAPTION_DATASETS)}, got {data.name!r}")
        source = load_caption_source(data.name, data.path, data.img_size, log=print)
        split = split_items(source, o.heldout_classes(), data.val_fraction, data.seed)
        where = f"{data.name} data" + (f" {data.path!r}" if data.path else "")
        if not split.train or not split.val:
            raise ValueError(f"{where}: {len(split.train)} training and {len(split.val)} validation images after "
                             f"the split (data.val_fraction {data.val_fraction}); expected at least 1 of each")
        truncated: list[tuple[str, str]] = []
        train_items, capped = cap_per_caption(source, split.train, o.max_per_caption, data.seed)
        train = CaptionedImages(source, train_items, tokenize_captions(source, train_items, self.tokenizer, truncated),
                                build_transform(data, train=True), train=True)
        eval_transform = build_transform(data, train=False)
        val = CaptionedImages(source, split.val, tokenize_captions(source, split.val, self.tokenizer, truncated),
                              eval_transform, train=False)
        if "heldout" in o.zero_shot and split.heldout:
            val.zero_shot["heldout"] = heldout_zero_shot_set(source, split.heldout, split.heldout_labels,
                                                             split.heldout_classes, eval_transform)
        for name in o.zero_shot:
            if name != "heldout":
                val.zero_shot[name] = package_zero_shot_set(name, eval_transform, o.zero_shot_limit,
                                                            o.zero_shot_invert)
        skipped = list(source.skipped) + list(split.skipped)
        warn_skipped(where, skipped)
        if truncated:
            warn_skipped(where, [(f"{len(truncated)} captions", f"truncated to the context length "
                                                                f"{o.context_length}, e.g. {truncated[0][0]}")])
        held = {f for f, _ in o.heldout_classes()}
        known = sorted({_clean(f) for item in source.items for f in item.folders
                        if not any(f == h or f.startswith(h + "/") for h in held)})
        meta = {"img_size": int(data.img_size), "mean": list(data.mean), "std": list(data.std),
                "context_length": o.context_length, "tokenizer": self.tokenizer.name,
                "heldout_classes": list(split.heldout_classes) if split.heldout else [], "known_classes": known,
                "zero_shot": {k: list(z.classes) for k, z in val.zero_shot.items()},
                "captions_truncated": len(truncated), "train_capped": capped, "train_captions": train.num_texts,
                "val_captions": val.num_texts}
        description = (f"{source.description}: {len(train)} train" + (f" ({capped} over task.max_per_caption "
                       f"left out)" if capped else "") + f" / {len(val)} val images ({val.num_texts} val "
                       f"captions), zero-shot sets " + (", ".join(f"{k} ({len(z.dataset)})" for k, z in
                                                               val.zero_shot.items()) or "none"))
        return TaskData(train, val, meta, collate_clip, skipped, description)

    def eval_data_config(self, data: DataConfig, meta: dict) -> DataConfig:
        return dataclasses.replace(data, randaugment=None, random_resized_crop=False, hflip=False)

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> CLIPModel:
        from ...models import create_model, get_preset

        o = self.options
        if get_preset(model.name).input_kind != "image":
            raise ValueError(f"task clip: model.name is the image tower, expected an image preset, got {model.name!r} "
                             f"({get_preset(model.name).input_kind})")
        if get_preset(o.text_model).input_kind != "tokens":
            raise ValueError(f"task.text_model: expected a text tower (input_kind 'tokens', e.g. clip_text_tiny), "
                             f"got {o.text_model!r} ({get_preset(o.text_model).input_kind})")
        if "context_length" in o.text_overrides:
            raise ValueError("task.text_overrides: set the context length with task.context_length (the tokenizer "
                             "uses it too), not text_overrides.context_length")
        visual = create_model(model.name, num_classes=0, img_size=meta["img_size"], **model_kwargs(model))
        text = create_model(o.text_model, num_classes=o.embed_dim, context_length=o.context_length,
                            **o.text_overrides)
        spec = text.spec
        if spec.vocab_size < self.tokenizer.vocab_size or spec.eot_id != self.tokenizer.eot_id:
            raise ValueError(f"task.text_model {o.text_model!r}: vocab_size {spec.vocab_size} / eot_id {spec.eot_id} "
                             f"do not fit the tokenizer ({self.tokenizer.vocab_size} ids, end token "
                             f"{self.tokenizer.eot_id})")
        return CLIPModel(visual, text, o.logit_scale_init, o.max_logit_scale)

    # -- training -------------------------------------------------------------------------------------------------
    def check_batch_size(self, per_rank: int) -> None:
        if per_rank < 2:
            raise ValueError(f"contrastive training needs negatives: expected a per-rank batch of at least 2, got "
                             f"{per_rank}")

    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        ids, _ = stack_tokens(batch["tokens"])  # (B, L): one caption per image
        out = module(images=batch["image"], tokens=ids, padding_mask=batch.get("padding_mask"))
        loss, correct = clip_loss(out.image, out.text, out.logit_scale, ctx.info)
        return LossOutput(loss, {"contrastive": loss}, {"i2t_acc": (correct, torch.tensor(ids.shape[0]))})

    def after_update(self, model: nn.Module, ctx: StepContext) -> None:
        model.clamp_logit_scale_()

    # -- evaluation -----------------------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, batch: dict) -> dict:
        """``{"image": (B, E), "text": per sample (k_i, E)}``, normalised."""
        ids, owner = stack_tokens(batch["tokens"])
        out = model(images=batch["image"], tokens=ids, padding_mask=batch.get("padding_mask"))
        counts = torch.bincount(owner, minlength=len(batch["tokens"])).tolist()
        return {"image": out.image.float(), "text": list(out.text.float().split(counts))}

    def evaluate(self, model: nn.Module, data: TaskData, ctx) -> Evaluation:
        from ..classification.metrics import TopKMetric

        loader, valid = ctx.loader(data.val)
        embed_dim = _embed_dim(model)
        retrieval = run_evaluation(model, loader, self.eval_forward, RetrievalMetric(data.val.text_offsets, embed_dim),
                                   ctx, valid)
        metrics, details = dict(retrieval.metrics), {"retrieval": retrieval.details}
        metrics["logit_scale"] = float(getattr(model, "module", model).scale().detach())
        for name, zs in data.val.zero_shot.items():
            weights = class_embeddings(model, zs.classes, self.options.templates, self.tokenizer, ctx.device)

            def forward(m, batch, weights=weights):
                image = m(images=batch["image"], padding_mask=batch.get("padding_mask")).image.float()
                return 100.0 * image @ weights.t()  # (B, C) cosine similarities x 100, as CLIP's logits

            loader, valid = ctx.loader(zs.dataset)
            result = run_evaluation(model, loader, forward, TopKMetric(len(zs.classes)), ctx, valid)
            metrics[f"zs_{name}_top1"] = result.metrics["top1"]
            metrics[f"zs_{name}_balanced"] = float(np.nanmean(result.details.per_class))  # mean per-class recall
            details[name] = result.details
        return Evaluation(metrics, details)

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        from .report import format_clip_evaluation

        return format_clip_evaluation(evaluation, meta)

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        from .predict import predict_texts

        if options.threshold is not None:
            raise ValueError("clip predict ranks texts for each image (--text, --top-k); --threshold is for "
                             "detection")
        transform = build_transform(self.eval_data_config(data, meta), train=False)
        return predict_texts(model, meta, transform, inputs, options, self.tokenizer, self.options.templates, device)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        from .report import report_items

        return report_items(model, data, evaluation, device)

    def attention_model(self, model: nn.Module) -> nn.Module:
        return model.visual


def _embed_dim(model: nn.Module) -> int:
    inner = getattr(model, "module", model)  # DDP
    return int(inner.embed_dim)
