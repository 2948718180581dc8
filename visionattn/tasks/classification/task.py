"""Image classification with the DeiT recipe: label smoothing, Mixup/CutMix, hard distillation through the
distillation token, top-1 / top-k, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from ...data import DataConfig, build_datasets, build_transform
from ...models.config import ModelConfig, model_kwargs
from ..base import (
    Evaluation,
    LossOutput,
    PredictOptions,
    PredictOutput,
    ReportItem,
    StepContext,
    Task,
    TaskData,
)
from .data import CLASSIFICATION_DATASETS, data_from_bundle
from .loss import DeiTLoss, DistillationModule, logits_of
from .metrics import TopKMetric, format_eval
from .options import ClassificationOptions
from .predict import format_predictions, predict_images
from .report import confusion_items, sample_grid

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """Batches ``{"image": (B, 3, H, W), "label": (B,)}``; the model is any registered preset with a
    ``len(classes)``-way head; evaluation reports ``loss``, ``top1``, ``top5`` (primary: ``top1``)."""

    name = "classification"
    options_class = ClassificationOptions
    primary_metric = "top1"
    higher_is_better = True
    default_config = "default.yaml"
    datasets = CLASSIFICATION_DATASETS

    def __init__(self, options: ClassificationOptions | None = None):
        super().__init__(options)
        o = self.options
        self.criterion = DeiTLoss(o.label_smoothing, o.distill_weight)
        self.teacher: nn.Module | None = None
        self.mixup = None
        self._meta: dict | None = None

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        return data_from_bundle(build_datasets(data), data)

    def eval_data_config(self, data: DataConfig, meta: dict) -> DataConfig:
        """No augmentation, and the checkpoint's class list (a dataset whose classes differ is an error)."""
        return dataclasses.replace(data, randaugment=None, random_resized_crop=False, hflip=False,
                                   classes=list(meta["classes"]))

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> nn.Module:
        from ...models import create_model

        self._meta = dict(meta)
        return create_model(model.name, num_classes=len(meta["classes"]), img_size=meta["img_size"],
                            **model_kwargs(model))

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """The teacher (hard distillation) and timm's Mixup, built once the head width is known."""
        o = self.options
        if self._meta is None:
            raise RuntimeError("ClassificationTask.setup: build_model first (the teacher needs the classes)")
        classes = len(self._meta["classes"])
        if o.teacher and self.teacher is None:
            from ...models import create_model

            self.teacher = create_model(o.teacher, num_classes=classes, img_size=self._meta["img_size"],
                                        pretrained_path=o.teacher_checkpoint)
            self.teacher.requires_grad_(False).eval()
        if self.teacher is not None:
            self.teacher.to(device)
        if o.mixes and self.mixup is None:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=o.mixup, cutmix_alpha=o.cutmix, prob=o.mixup_prob,
                               switch_prob=o.mixup_switch_prob, label_smoothing=o.label_smoothing,
                               num_classes=classes)

    def train_module(self, model: nn.Module) -> nn.Module:
        return DistillationModule(model) if self.options.teacher else model

    # -- training -------------------------------------------------------------------------------------------------
    def check_batch_size(self, per_rank: int) -> None:
        """Mixup/CutMix pairs images within a batch (``x.flip(0)``): an odd batch leaves one unpaired."""
        if self.options.mixes and per_rank % 2:
            raise ValueError(f"Mixup/CutMix pairs images within a batch: expected an even per-rank batch, got "
                             f"{per_rank}")

    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        x, hard = batch["image"], batch["label"]
        soft = None
        if self.mixup is not None:
            x, soft = self.mixup(x, hard)
        teacher_labels = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_labels = self.teacher(x).argmax(dim=-1)
        outputs = module(x)
        total, terms = self.criterion(outputs, hard, soft, teacher_labels)
        correct = (logits_of(outputs).detach().argmax(dim=-1) == hard).sum()
        return LossOutput(total, terms, {"acc": (correct, torch.tensor(hard.shape[0]))})

    # -- evaluation -----------------------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, batch: dict):
        return logits_of(model(batch["image"])).float()

    def metric(self, meta: dict) -> TopKMetric:
        return TopKMetric(len(meta["classes"]))

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        return format_eval(evaluation.details, list(meta["classes"]))

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        if options.texts or options.threshold is not None:
            raise ValueError("classification predict takes image files and --top-k; --text and --threshold are "
                             "for other tasks")
        transform = build_transform(data, train=False, in_chans=3)
        predictions = predict_images(model, list(meta["classes"]), transform, inputs, top_k=options.top_k,
                                     batch_size=options.batch_size, device=device)
        return PredictOutput(format_predictions(predictions), errors=sum(p.error is not None for p in predictions))

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        classes = list(data.meta["classes"])
        items = [] if evaluation is None else confusion_items(evaluation.details.confusion, classes)
        inputs = self.report_inputs(data, 16)
        if inputs is not None:
            x, shown = inputs
            labels = [int(data.val[i]["label"]) for i in range(len(x))]
            items.append(sample_grid(model, x, shown, labels, classes, device))
        return items
