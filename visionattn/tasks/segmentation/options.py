"""The segmentation task's ``task:`` section: SETR's decoder and heads, the loss, inference, and the data knobs the
shared ``data:`` section has no key for."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import TaskOptions
from .decoders import DECODERS
from .inference import INFERENCE_MODES

__all__ = ["SegmentationOptions"]


@dataclass
class SegmentationOptions(TaskOptions):
    """Model: ``decoder`` naive | pup | mla over ``stages`` of the backbone (None: the last; MLA: ``mla_streams``
    evenly spaced), ``channels`` wide; ``aux_stages``: a naive auxiliary head on each, its CE weighted
    ``aux_weight``; ``input_norm``: LayerNorm the features a head reads.

    Loss and labels: cross-entropy ignoring ``ignore_index`` (also the label of padding), ``class_weights`` one per
    class or None.

    Inference (evaluation, report, predict): ``whole`` image, or ``slide``: windows of ``window`` (None: the training
    size ``data.img_size``) every ``stride`` pixels (None: two thirds of the window), their logits averaged.

    File data (``seg_folder``, ``seg_csv``, ``coco_semantic``, ``labelme_voc``): training images are scaled by a
    random ratio in ``scale_range`` (after scaling the long side to ``resize`` when set; evaluation uses ``resize``
    only) and cropped to ``data.img_size``; ``data.hflip`` flips. ``palette``: ``[[r, g, b], ...]`` (index = class)
    to read RGB masks; ``val_path``: a validation set in the format of ``data.path`` (else ``data.val_fraction`` of
    it, seeded by ``data.seed``); ``coco_images`` / ``coco_panoptic``: folders of a COCO file's images / panoptic
    PNGs (default: beside the JSON).

    Generated data: ``train_size`` items per training epoch (new digit scenes / random nuclei crops each epoch),
    ``val_size`` validation digit scenes; scenes of ``data.img_size`` pixels with ``scene_digits`` digits (inclusive
    range) upsampled ``scene_scale`` times on a ``scene_background``.
    """

    decoder: str = "pup"
    channels: int = 64
    stages: list[int] | None = None
    mla_streams: int = 4
    aux_stages: list[int] = field(default_factory=list)
    aux_weight: float = 0.4
    input_norm: bool = True
    ignore_index: int = 255
    class_weights: list[float] | None = None
    inference: str = "whole"
    window: int | None = None
    stride: int | None = None
    scale_range: tuple[float, float] = (0.5, 2.0)
    resize: int | None = None
    palette: list[list[int]] | None = None
    val_path: str | None = None
    coco_images: str | None = None
    coco_panoptic: str | None = None
    train_size: int = 2000
    val_size: int = 200
    scene_digits: tuple[int, int] = (1, 3)
    scene_scale: tuple[float, float] = (3.0, 5.0)
    scene_background: str = "plain"

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.decoder in DECODERS, "decoder", f"one of {DECODERS}", self.decoder)
        need(self.channels >= 2, "channels", ">= 2", self.channels)
        need(self.mla_streams >= 2, "mla_streams", ">= 2", self.mla_streams)
        need(self.aux_weight >= 0, "aux_weight", ">= 0", self.aux_weight)
        need(0 <= self.ignore_index, "ignore_index", ">= 0", self.ignore_index)
        need(self.class_weights is None or all(w >= 0 for w in self.class_weights), "class_weights",
             "None or non-negative numbers", self.class_weights)
        need(self.inference in INFERENCE_MODES, "inference", f"one of {INFERENCE_MODES}", self.inference)
        need(self.window is None or self.window >= 1, "window", "None or >= 1", self.window)
        need(self.stride is None or self.stride >= 1, "stride", "None or >= 1", self.stride)
        need(self.window is None or self.stride is None or self.stride <= self.window, "stride",
             f"<= window {self.window} (else pixels go uncovered)", self.stride)
        need(0 < self.scale_range[0] <= self.scale_range[1], "scale_range", "0 < low <= high", self.scale_range)
        need(self.resize is None or self.resize >= 1, "resize", "None or >= 1", self.resize)
        need(self.palette is None or all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in self.palette),
             "palette", "None or [[r, g, b], ...] with values 0..255", self.palette)
        need(self.train_size >= 1, "train_size", ">= 1", self.train_size)
        need(self.val_size >= 1, "val_size", ">= 1", self.val_size)
        need(1 <= self.scene_digits[0] <= self.scene_digits[1], "scene_digits", "1 <= low <= high",
             self.scene_digits)
        need(0 < self.scene_scale[0] <= self.scene_scale[1], "scene_scale", "0 < low <= high", self.scene_scale)
        return out
