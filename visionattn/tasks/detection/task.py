"""Object detection and panoptic segmentation with DETR: set prediction through Hungarian matching, any registered
backbone, COCO mAP and panoptic quality."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ...data import DataConfig
from ...models.config import ModelConfig, spec_overrides
from ..base import Evaluation, LossOutput, PredictOptions, PredictOutput, ReportItem, StepContext, Task, TaskData
from .data import DETECTION_DATASETS, PadMultiple, build_detection_data, eval_data_config
from .loss import SetCriterion
from .matcher import HungarianMatcher
from .metrics import DetectionMetric, format_detection
from .model import Detr, build_detr, load_detr_weights
from .options import DetectionOptions
from .predict import predict_files
from .report import decoder_attention_item, detection_items, sample_pairs

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    """Batches ``{"image" (B, 3, H, W), "padding_mask" (B, H, W), "target": [per-image dicts]}`` (see
    :mod:`.data`); the model is :class:`~.model.Detr` on the backbone ``model.name``; evaluation reports COCO
    ``map``, ``map50``, ``map75``, ``ar100`` (primary: ``map``) and, with the panoptic head, ``pq``, ``sq``, ``rq``
    (primary: ``pq``)."""

    name = "detection"
    options_class = DetectionOptions
    primary_metric = "map"
    higher_is_better = True
    default_config = "detection_digits.yaml"
    datasets = DETECTION_DATASETS

    def __init__(self, options: DetectionOptions | None = None):
        super().__init__(options)
        self.primary_metric = "pq" if self.options.masks else "map"
        self.pad = PadMultiple()
        self.criterion: SetCriterion | None = None

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        return build_detection_data(data, self.options, self.pad)

    def eval_data_config(self, data: DataConfig, meta: dict) -> DataConfig:
        return eval_data_config(data)

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> Detr:
        o = self.options
        classes = list(meta["classes"])
        if model.pretrained_path is not None and not Path(model.pretrained_path).is_file():
            raise FileNotFoundError(f"model.pretrained_path {model.pretrained_path!r} does not exist (the digit-scene "
                                    f"configs pretrain their backbone first: visionattn train --config "
                                    f"configs/detection_digits_backbone.yaml --run-dir runs/detr_backbone; or set "
                                    f"model.pretrained_path=null to start from random weights)")
        detr = build_detr(model.name, o.detr_spec(len(classes)), spec_overrides(model), model.pretrained_path)
        self.pad.multiple = math.lcm(32, detr.size_multiple)
        matcher = HungarianMatcher(o.class_cost, o.bbox_cost, o.giou_cost)
        self.criterion = SetCriterion(len(classes), matcher, o.loss_weights(), aux=o.aux_loss, masks=o.masks)
        return detr

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Before training only: the initial DETR weights (``task.init_checkpoint``), then DETR's second panoptic
        stage freezes everything but the mask head (``task.freeze_detr``)."""
        o = self.options
        if o.init_checkpoint:
            load_detr_weights(model, o.init_checkpoint, strict=not o.masks)
        if o.freeze_detr:
            model.freeze_detection()

    # -- training -------------------------------------------------------------------------------------------------
    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        if self.criterion is None:
            raise RuntimeError("DetectionTask.loss: build_model first (the criterion needs the classes)")
        out = module(batch["image"], batch["padding_mask"])
        terms, stats = self.criterion(out, batch["target"], tuple(batch["image"].shape[-2:]), ctx.info)
        return LossOutput(sum(terms.values()), terms, stats)

    # -- evaluation -----------------------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, batch: dict) -> dict:
        out = model(batch["image"], batch["padding_mask"])
        result = {"logits": out.logits.float(), "boxes": out.boxes.float()}
        if out.masks is not None:
            result["masks"] = out.masks.float()
        return result

    def metric(self, meta: dict) -> DetectionMetric:
        return DetectionMetric(meta["classes"], meta["isthing"], panoptic=self.options.masks,
                               panoptic_threshold=self.options.panoptic_threshold)

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        return format_detection(evaluation)

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        threshold = options.score_threshold(self.options.score_threshold)
        return predict_files(model, meta, inputs, options, threshold, self.options.panoptic_threshold, device)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        o = self.options
        items = detection_items(evaluation)
        if len(data.val):
            items.append(sample_pairs(model, data, o.score_threshold, o.panoptic_threshold, device))
            attention = decoder_attention_item(model, data, o.score_threshold, device)
            if attention is not None:
                items.append(attention)
        return items

    def report_inputs(self, data: TaskData, count: int):
        """None: the decoder's cross-attention section replaces the generic last-layer maps."""
        return None
