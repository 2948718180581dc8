"""Video classification: clips sampled from videos (random offset or uniform), transformed with
``torchvision.transforms.v2``, classified by any ``input_kind="video"`` backbone (ViViT's four variants,
TimeSformer, Video Swin); evaluation averages the softmax over ``test_clips`` clips per video."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...data import DataConfig
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
from ..classification.metrics import TopKMetric, format_eval
from ..classification.report import confusion_items
from .data import VIDEO_DATASETS, build_video_data, clip_transform
from .options import VideoOptions
from .predict import predict_videos
from .report import attention_item, sample_strips

__all__ = ["VideoTask"]


class VideoTask(Task):
    """Batches ``{"video": (B, 3, T, S, S), "label": (B,)}`` for training and ``{"video": (B, K, 3, T, S, S)}`` for
    evaluation; the model is a registered video preset built for ``task.num_frames`` frames of ``data.img_size``
    with a ``len(classes)``-way head; the loss is cross-entropy (``task.label_smoothing``); evaluation reports
    ``loss``, ``top1``, ``top5`` of the clip-averaged prediction (primary: ``top1``)."""

    name = "video"
    options_class = VideoOptions
    primary_metric = "top1"
    higher_is_better = True
    default_config = "video_factorised_self_attention.yaml"
    datasets = VIDEO_DATASETS

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        return build_video_data(data, self.options)

    def eval_data_config(self, data: DataConfig, meta: dict) -> DataConfig:
        return dataclasses.replace(data, random_resized_crop=False, hflip=False, classes=list(meta["classes"]))

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> nn.Module:
        from ...models import create_model, get_preset

        preset = get_preset(model.name)
        if getattr(preset.builder, "input_kind", "image") != "video":
            raise ValueError(f"the video task needs a video backbone (input_kind 'video': vivit_*, timesformer_*, "
                             f"video_swin_*), got {model.name!r}")
        kwargs = model_kwargs(model)  # spec overrides + pretrained weights
        kwargs.setdefault("num_frames", int(meta["num_frames"]))
        return create_model(model.name, num_classes=len(meta["classes"]), img_size=meta["img_size"], **kwargs)

    # -- training -------------------------------------------------------------------------------------------------
    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        logits = module(batch["video"])
        y = batch["label"]
        loss = F.cross_entropy(logits, y, label_smoothing=self.options.label_smoothing)
        correct = (logits.detach().argmax(dim=-1) == y).sum()
        return LossOutput(loss, {}, {"acc": (correct, torch.tensor(y.shape[0]))})

    # -- evaluation -----------------------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, batch: dict):
        """Log of the mean softmax over each video's clips ``(B, classes)`` (cross-entropy of it = the NLL of the
        averaged prediction)."""
        video = batch["video"]  # (B, K, 3, T, S, S)
        B, K = video.shape[:2]
        probs = model(video.flatten(0, 1)).float().softmax(dim=-1).reshape(B, K, -1).mean(dim=1)  # (B, classes)
        return probs.clamp_min(1e-12).log()

    def metric(self, meta: dict) -> TopKMetric:
        return TopKMetric(len(meta["classes"]))

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        return format_eval(evaluation.details, list(meta["classes"])).replace("images:", "videos:", 1)

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        if options.texts or options.threshold is not None:
            raise ValueError("video predict takes video files / frame folders and --top-k; --text and --threshold "
                             "are for other tasks")
        transform = clip_transform(dataclasses.replace(data, img_size=int(meta["img_size"])), train=False)
        lines, errors = predict_videos(model, meta, transform, inputs, options.top_k, device)
        return PredictOutput(lines, errors=errors)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        classes = list(data.meta["classes"])
        items = [] if evaluation is None else confusion_items(evaluation.details.confusion, classes)
        n = min(8, len(data.val))
        if n:
            samples = [data.val[i] for i in range(n)]
            clips = torch.stack([s["video"] for s in samples])  # (n, K, 3, T, S, S)
            items.append(sample_strips(model, clips, [int(s["label"]) for s in samples], classes, data.meta, device))
            attention = attention_item(model, clips[0, 0], data.meta)
            if attention is not None:
                items.append(attention)
        return items

    def report_inputs(self, data: TaskData, count: int):
        """None: the image attention maps do not apply; :meth:`report` draws the space-time ones."""
        return None
