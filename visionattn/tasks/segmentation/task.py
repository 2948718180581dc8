"""Semantic segmentation with SETR: any backbone through ``forward_intermediates`` + the naive, PUP or MLA decoder
(+ auxiliary heads), cross-entropy with an ignore index, whole-image or sliding-window inference, mIoU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...data import DataConfig
from ...models.config import ModelConfig, spec_overrides
from ..base import Evaluation, LossOutput, PredictOptions, PredictOutput, ReportItem, StepContext, Task, TaskData
from .baselines import TORCHVISION_MODELS, build_torchvision_baseline
from .data import SEGMENTATION_DATASETS, build_segmentation_data
from .inference import slide_inference, whole_inference
from .loss import SegmentationLoss
from .metrics import ConfusionMetric, format_seg_eval
from .model import TrainForward, build_segmentation_model, freeze_unused
from .options import SegmentationOptions

__all__ = ["SegmentationTask"]


def _logits(out) -> torch.Tensor:
    """The main logits of a forward: ``TrainForward`` (what the trainer wraps) gives ``(logits, aux)``."""
    return out[0] if isinstance(out, tuple) else out


class SegmentationTask(Task):
    """Batches ``{"image": (B, 3, H, W), "mask": (B, H, W) int64, "padding_mask": (B, H, W) | None, "name"}``; the
    model is SETR on any registered backbone (or a torchvision FCN / DeepLabV3 baseline); evaluation reports
    ``miou`` (primary), ``pixel_acc``, ``mean_acc``, ``loss`` and ``iou_<class>``."""

    name = "segmentation"
    options_class = SegmentationOptions
    primary_metric = "miou"
    higher_is_better = True
    default_config = "segmentation_digits_pup.yaml"
    datasets = SEGMENTATION_DATASETS

    def __init__(self, options: SegmentationOptions | None = None):
        super().__init__(options)
        self._meta: dict | None = None
        self.criterion: SegmentationLoss | None = None

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        return build_segmentation_data(data, self.options, seed)

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> nn.Module:
        o = self.options
        self._meta = dict(meta)
        classes = list(meta["classes"])
        self.criterion = SegmentationLoss(len(classes), o.ignore_index, o.class_weights, o.aux_weight)
        if model.name in TORCHVISION_MODELS:
            if model.pretrained_path:
                raise ValueError(f"{model.name} is a from-scratch baseline; model.pretrained_path is not supported")
            return build_torchvision_baseline(model.name, len(classes), dict(model.overrides))
        from ...models import create_model

        backbone = create_model(model.name, num_classes=0, img_size=meta["img_size"],
                                pretrained_path=model.pretrained_path, **spec_overrides(model))
        if getattr(backbone, "input_kind", "image") != "image":
            raise ValueError(f"segmentation needs an image backbone, {model.name!r} takes {backbone.input_kind}")
        seg = build_segmentation_model(backbone, o.decoder, len(classes), o.channels, o.stages, o.mla_streams,
                                       o.aux_stages, input_norm=o.input_norm)
        freeze_unused(seg, int(meta["img_size"]))  # e.g. the backbone's final norm: DDP needs every grad used
        return seg

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self._device = device

    def train_module(self, model: nn.Module) -> nn.Module:
        """:class:`TrainForward` (so DDP sees the auxiliary heads). Under torchrun on GPUs the heads' BatchNorms
        become ``SyncBatchNorm`` (SETR's "sync batch norm": statistics over the global batch, whatever the
        per-rank batch); torch has no CPU SyncBatchNorm, so with gloo on CPU they stay per rank."""
        import torch.distributed as dist

        device = getattr(self, "_device", None)
        if (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and device is not None
                and device.type != "cpu"):
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return TrainForward(model)

    # -- training -------------------------------------------------------------------------------------------------
    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        logits, aux = module(batch["image"], batch["padding_mask"])
        target = batch["mask"]
        total, terms = self.criterion(logits, aux, target)
        valid = target != self.options.ignore_index
        correct = ((logits.detach().argmax(dim=1) == target) & valid).sum()
        return LossOutput(total, terms, {"pixel_acc": (correct, valid.sum())})

    # -- evaluation -----------------------------------------------------------------------------------------------
    def infer(self, model: nn.Module, image: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` (float32) of ``model`` by the configured inference (whole or sliding windows)."""
        def forward(x, mask):
            return _logits(model(x, mask))

        o = self.options
        if o.inference == "whole":
            return whole_inference(forward, image, padding_mask).float()
        if self._meta is None:
            raise RuntimeError("SegmentationTask.infer: build_model first (the window defaults to the training size)")
        window = o.window or int(self._meta["img_size"])
        stride = o.stride or max(1, (2 * window) // 3)
        return slide_inference(forward, image, len(self._meta["classes"]), (window, window), (stride, stride),
                               padding_mask)

    def eval_forward(self, model: nn.Module, batch: dict):
        return self.infer(model, batch["image"], batch["padding_mask"])

    def metric(self, meta: dict) -> ConfusionMetric:
        return ConfusionMetric(list(meta["classes"]), self.options.ignore_index)

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        return format_seg_eval(evaluation.details, list(meta["classes"]))

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        from ...data.segmentation import segmentation_transform
        from .predict import predict_files

        if options.texts or options.threshold is not None:
            raise ValueError("segmentation predict takes image files (and --out, --top-k); --text and --threshold "
                             "are for other tasks")
        if options.top_k < 1:
            raise ValueError(f"--top-k: expected >= 1 (classes listed per image), got {options.top_k}")
        model.to(device).eval()
        transform = segmentation_transform(False, None, meta["mean"], meta["std"], base=self.options.resize,
                                           ignore_index=self.options.ignore_index)
        return predict_files(lambda x: self.infer(model, x, None), meta, transform, inputs, options.out_dir,
                             options.top_k, device)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        from .report import iou_table, overlay_items

        items = [] if evaluation is None else [iou_table(evaluation.details, list(data.meta["classes"]))]
        samples = [data.val[i] for i in range(min(6, len(data.val)))]
        was = model.training
        model.eval()
        try:
            items += overlay_items(lambda x, m: self.infer(model, x, m), samples, data.meta, device)
        finally:
            model.train(was)
        return items
