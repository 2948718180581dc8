"""Phrase grounding with M-DETR: boxes for the phrases of a caption; Recall@1/5 at IoU 0.5 per phrase type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ...data import DataConfig
from ...models.config import ModelConfig, spec_overrides
from ..base import Evaluation, LossOutput, PredictOptions, PredictOutput, ReportItem, StepContext, Task, TaskData
from ..detection.data import PadMultiple
from .data import build_grounding_data, eval_data_config
from .loss import GroundingCriterion
from .matcher import GroundingMatcher
from .metrics import GroundingMetric, format_grounding
from .model import MDetr, build_mdetr, load_detr_parts
from .options import GROUNDING_DATASETS, GroundingOptions
from .predict import grounding_examples, predict_files
from .tokenizer import GroundingTokenizer

__all__ = ["GroundingTask"]


class GroundingTask(Task):
    """Batches ``{"image", "padding_mask", "tokens" (B, L), "text_padding" (B, L), "target": [dicts]}`` (see
    :mod:`.data`); the model is :class:`~.model.MDetr`; evaluation reports Recall@1/5 and the text-blind baseline
    per phrase type (primary: ``recall1``)."""

    name = "grounding"
    options_class = GroundingOptions
    primary_metric = "recall1"
    higher_is_better = True
    default_config = "grounding_digits.yaml"
    datasets = GROUNDING_DATASETS

    def __init__(self, options: GroundingOptions | None = None):
        super().__init__(options)
        self.pad = PadMultiple()
        self.tokenizer: GroundingTokenizer | None = None
        self.criterion: GroundingCriterion | None = None

    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        bundle, tokenizer = build_grounding_data(data, self.options, self.pad)
        if self.tokenizer is not None:  # a checkpoint's vocabulary wins (evaluation of a trained model)
            bundle.collate.tokenizer = self.tokenizer
            bundle.meta["vocab"] = list(self.tokenizer.vocab)
        else:
            self.tokenizer = tokenizer
        return bundle

    def eval_data_config(self, data: DataConfig, meta: dict) -> DataConfig:
        return eval_data_config(data)

    def build_model(self, model: ModelConfig, meta: dict) -> MDetr:
        o = self.options
        if model.pretrained_path is not None and not Path(model.pretrained_path).is_file():
            raise FileNotFoundError(f"model.pretrained_path {model.pretrained_path!r} does not exist (the digit "
                                    f"configs pretrain their backbone first: visionattn train --config "
                                    f"configs/detection_digits_backbone.yaml --run-dir runs/detr_backbone; or set "
                                    f"model.pretrained_path=null to start from random weights)")
        self.tokenizer = GroundingTokenizer(meta["vocab"], o.max_text_len)
        mdetr = build_mdetr(model.name, o.spec(len(self.tokenizer)), spec_overrides(model), model.pretrained_path)
        self.pad.multiple = math.lcm(32, mdetr.size_multiple)
        self.criterion = GroundingCriterion(GroundingMatcher(o.token_cost, o.bbox_cost, o.giou_cost), o.weights(),
                                            aux=o.aux_loss)
        return mdetr

    def setup(self, model: nn.Module, device: torch.device) -> None:
        if self.options.init_detr:
            loaded = load_detr_parts(model, self.options.init_detr)
            print(f"grounding: {len(loaded)} tensors from the DETR checkpoint {self.options.init_detr}")

    @staticmethod
    def _forward(model: nn.Module, batch: dict):
        return model(batch["image"], batch["padding_mask"], batch["tokens"], batch["text_padding"])

    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        if self.criterion is None:
            raise RuntimeError("GroundingTask.loss: build_model first")
        terms, stats = self.criterion(self._forward(module, batch), batch["target"], ctx.info)
        return LossOutput(sum(terms.values()), terms, stats)

    def eval_forward(self, model: nn.Module, batch: dict) -> dict:
        out = self._forward(model, batch)
        return {"logits": out.logits.float(), "boxes": out.boxes.float(), "queries": out.queries.float(),
                "tokens": out.tokens.float(), "text_padding": out.text_padding}

    def metric(self, meta: dict) -> GroundingMetric:
        return GroundingMetric(list(meta.get("kinds", [])), score=self.options.score,
                               temperature=self.options.temperature)

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        return format_grounding(evaluation)

    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        threshold = options.score_threshold(self.options.score_threshold)
        tokenizer = self.tokenizer or GroundingTokenizer(meta["vocab"], self.options.max_text_len)
        return predict_files(model, meta, tokenizer, inputs, options, threshold, device, self.options.score,
                             self.options.temperature)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        items = []
        if evaluation is not None:
            items.append(ReportItem("Phrase grounding", text=format_grounding(evaluation)))
        if len(data.val):
            items.append(grounding_examples(model, data, device, score=self.options.score,
                                            temperature=self.options.temperature))
        return items

    def report_inputs(self, data: TaskData, count: int):
        return None
