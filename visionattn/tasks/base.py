"""The Task contract: everything the one trainer (:mod:`visionattn.train`) asks of a task, and nothing more.

A task is a package under ``visionattn/tasks/`` with a :class:`Task` subclass registered by name
(:mod:`visionattn.tasks`). The trainer knows no task by name: it builds the data and the model through the task,
sums the loss terms it returns (DETR's ``weight_dict`` habit: the task weighs, the engine adds), asks it to evaluate
and to draw its report pictures, and checkpoints its state. What a task owns:

=================  ===================================================================================================
``options``        its ``task:`` config section, a :class:`TaskOptions` dataclass (``task.name`` picks the task)
``build_data``     train/val datasets whose items are dicts (``"image"`` plus targets: ``"label"``, ``"boxes"``,
                   ``"masks"``, ``"text"``...) and the collate function that batches them (padding + masks)
``build_model``    the model to train, from the ``model:`` section and the data's ``meta`` (classes, sizes): any
                   backbone through the Backbone contract plus the task's head
``loss``           a :class:`LossOutput`: the total and its named, weighted terms
``metric``         a :class:`Metric` (update per batch, reduce over ranks, compute); ``primary_metric`` and
                   ``higher_is_better`` choose the best checkpoint
``predict``        what ``visionattn predict`` prints / writes for input files
``report``         task pictures and tables for ``report.html`` (:class:`ReportItem`)
``state_dict``     task state that must survive a resume (DINO's center, a teacher's weights)
=================  ===================================================================================================

Helpers take what they need as arguments: the step context (:class:`StepContext`) and evaluation context
(:class:`EvalContext`) carry progress, device, precision and the job's :class:`~visionattn.comm.DistInfo`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from ..comm import DistInfo

__all__ = [
    "EvalContext",
    "Evaluation",
    "GridImage",
    "LossOutput",
    "Metric",
    "PredictOptions",
    "PredictOutput",
    "Progress",
    "ReportItem",
    "StepContext",
    "Task",
    "TaskData",
    "TaskOptions",
]


@dataclass
class TaskOptions:
    """Base of every task's ``task:`` section. Subclasses are dataclasses whose fields all have defaults; the
    section's ``name`` key is the task's registered name, not a field."""


@dataclass
class TaskData:
    """What ``Task.build_data`` returns.

    train / val: datasets of dict samples (val is never augmented). collate: ``list[dict] -> dict`` batch (default:
    ``torch.utils.data.default_collate``). meta: plain, YAML-safe facts the model and predictions need (class names,
    image size, normalisation); checkpoints keep it, so a model can be rebuilt without the data. skipped:
    ``(file, reason)`` for every item left out while indexing. description: the data in a few words, for logs.
    """

    train: Dataset
    val: Dataset
    meta: dict[str, Any]
    collate: Callable[[list], Any] = default_collate
    skipped: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""


@dataclass(frozen=True)
class Progress:
    """Where training stands when a step runs: ``step`` optimizer updates done before this one, of ``total_steps``;
    ``epoch`` (0-based) of ``updates_per_epoch`` updates each."""

    step: int
    total_steps: int
    epoch: int
    updates_per_epoch: int

    @property
    def fraction(self) -> float:
        """Share of training done, in [0, 1] (the input of momentum and temperature schedules)."""
        return self.step / max(self.total_steps, 1)


@dataclass(frozen=True)
class StepContext:
    """What a training step may need besides the batch."""

    progress: Progress
    device: torch.device
    precision: str
    info: DistInfo


@dataclass
class LossOutput:
    """``total``: the scalar that backward sees. ``terms``: named, already weighted scalar tensors whose sum is
    ``total`` (logged as ``loss_<name>``). ``stats``: named ``(numerator, denominator)`` pairs logged as their ratio
    over a logging window (e.g. ``{"acc": (correct, images)}``). Tensors may stay on the device: they are read
    once per logging window, not per step."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The result of evaluating on a split: ``metrics`` (name → number, the task's primary metric among them,
    logged with a ``val_`` prefix) and ``details``, anything the task's report or text output needs (a confusion
    matrix, per-class AP, predictions)."""

    metrics: dict[str, float]
    details: Any = None


class Metric(Protocol):
    """Accumulates over evaluation batches. ``update(outputs, batch)`` with this rank's real samples only;
    ``reduce(info)`` sums the accumulators over ranks (a collective: every rank calls it once); ``compute()`` →
    :class:`Evaluation`."""

    def update(self, outputs: Any, batch: dict) -> None: ...

    def reduce(self, info: DistInfo) -> None: ...

    def compute(self) -> Evaluation: ...


@dataclass(frozen=True)
class EvalContext:
    """Evaluation settings. ``loader(dataset)`` → ``(loader, valid)``: a loader over this rank's shard of
    ``dataset`` batched with the task's collate, and how many of its leading items are real (a padded shard repeats
    samples after them; they are run, for FSDP's collectives, but must not be counted)."""

    device: torch.device
    precision: str
    info: DistInfo
    loader: Callable[[Dataset], tuple[Any, int]]


@dataclass
class GridImage:
    """One picture in a report grid: PNG bytes, a caption, and whether it is right (True / False colour the frame
    green / red; None leaves it neutral)."""

    png: bytes
    caption: str = ""
    ok: bool | None = None


@dataclass
class ReportItem:
    """A section of ``report.html``: a title, then any of a text paragraph, a picture (PNG bytes), a table (rows as
    dicts, same keys) and a grid of small pictures. ``filename``: also write the picture into the run directory
    under this name (e.g. ``confusion.png``)."""

    title: str
    text: str = ""
    png: bytes | None = None
    table: list[dict[str, Any]] | None = None
    grid: list[GridImage] | None = None
    filename: str | None = None


@dataclass
class PredictOptions:
    """What ``visionattn predict`` was asked for; each task uses the fields that apply and refuses the others.
    top_k: ranked results per input. out_dir: where pictures / JSON go (None = print only). texts: phrases or
    labels (CLIP, grounding). threshold: score threshold for detections. batch_size: inputs per forward."""

    top_k: int = 5
    out_dir: Path | None = None
    texts: list[str] = field(default_factory=list)
    threshold: float | None = None
    batch_size: int = 32

    def score_threshold(self, task_default: float) -> float:
        """``--threshold`` if given, else the task's default; a ``ValueError`` unless it is a score in [0, 1]."""
        threshold = task_default if self.threshold is None else self.threshold
        if not 0 <= threshold <= 1:
            raise ValueError(f"--threshold: expected a score in [0, 1], got {threshold}")
        return threshold


@dataclass
class PredictOutput:
    """``lines``: what to print, one per input (or more). ``errors``: inputs that could not be used. ``files``:
    what was written."""

    lines: list[str]
    errors: int = 0
    files: list[Path] = field(default_factory=list)


class Task:
    """Base class of the tasks. Subclasses set the class attributes and implement the methods that raise
    ``NotImplementedError``; the others have defaults that fit an image-in, tensor-out model."""

    name: ClassVar[str] = ""
    options_class: ClassVar[type[TaskOptions]] = TaskOptions
    primary_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    default_config: ClassVar[str | None] = None  # a file under configs/ that `visionattn train task=NAME` starts from
    datasets: ClassVar[tuple[str, ...]] = ()  # data.name values this task can train on

    def __init__(self, options: TaskOptions | None = None):
        options = self.options_class() if options is None else options
        if not isinstance(options, self.options_class):
            raise TypeError(f"task {self.name!r}: expected options of type {self.options_class.__name__}, got "
                            f"{type(options).__name__}")
        self.options = options

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data, seed: int) -> TaskData:
        """Datasets of dict samples for ``data`` (a :class:`visionattn.data.DataConfig`); ``seed`` is the run's."""
        raise NotImplementedError

    def eval_data_config(self, data, meta: dict):
        """The data config ``visionattn eval`` uses for a checkpoint trained with ``data`` (default: unchanged)."""
        return data

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model, meta: dict) -> nn.Module:
        """The model to train from ``model`` (a :class:`visionattn.models.config.ModelConfig`) and the data's
        ``meta``. Its ``state_dict`` is what checkpoints keep as the weights."""
        raise NotImplementedError

    def train_module(self, model: nn.Module) -> nn.Module:
        """The module whose ``forward`` the loss calls and that DDP/FSDP wrap (default: the model itself; a wrapper
        when the loss needs another forward, so that DDP sees every parameter used through ``forward``)."""
        return model

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once before training, after :meth:`build_model` and with the model on ``device`` (e.g. build a
        teacher). Evaluation and prediction do not call it."""

    # -- training -------------------------------------------------------------------------------------------------
    def check_batch_size(self, per_rank: int) -> None:
        """Refuse a per-rank batch size the task cannot train with (``ValueError``); default: any."""

    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        """Forward ``batch`` (already on the device, inside autocast) through ``module`` and score it."""
        raise NotImplementedError

    def before_step(self, model: nn.Module, ctx: StepContext) -> None:
        """After the update's gradients are complete and clipped, just before the optimizer step (not called for a
        skipped update); e.g. DINO zeroes its last layer's gradient during the first epoch."""

    def after_update(self, model: nn.Module, ctx: StepContext) -> None:
        """After a successful optimizer step (not after a skipped one)."""

    # -- evaluation -----------------------------------------------------------------------------------------------
    def eval_forward(self, model: nn.Module, batch: dict):
        """The outputs the metric consumes (default: ``model(batch["image"])``)."""
        return model(batch["image"])

    def metric(self, meta: dict) -> Metric:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data: TaskData, ctx: EvalContext) -> Evaluation:
        """Score ``model`` on ``data.val`` (default: :meth:`eval_forward` + :meth:`metric` over this rank's shard,
        reduced over the ranks)."""
        from .runtime import run_evaluation

        loader, valid = ctx.loader(data.val)
        return run_evaluation(model, loader, self.eval_forward, self.metric(data.meta), ctx, valid)

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        """Text for ``visionattn eval`` (default: one line of metrics)."""
        return "   ".join(f"{k}: {v:.4g}" for k, v in evaluation.metrics.items())

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data, inputs: Sequence[str], options: PredictOptions,
                device: torch.device) -> PredictOutput:
        raise NotImplementedError(f"task {self.name!r} has no predict")

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        """Pictures and tables for ``report.html`` (default: none)."""
        return []

    def report_inputs(self, data: TaskData, count: int) -> tuple[Tensor, Tensor] | None:
        """A few validation inputs for the report's attention maps: ``(model inputs (n, C, H, W), display images
        (n, 3, H, W) in [0, 1])``, or None when there are none (default: the first ``count`` val images that share
        the first one's size, shown with the ``mean``/``std`` of ``data.meta``)."""
        from ..data.transforms import denormalize_with

        images = []
        for i in range(min(count, len(data.val))):
            image = data.val[i].get("image") if isinstance(data.val[i], dict) else None
            if not isinstance(image, Tensor) or image.ndim != 3 or (images and image.shape != images[0].shape):
                break
            images.append(image)
        if not images:
            return None
        x = torch.stack(images)
        mean, std = data.meta.get("mean", (0.5, 0.5, 0.5)), data.meta.get("std", (0.5, 0.5, 0.5))
        return x, denormalize_with(x, mean, std)

    def attention_model(self, model: nn.Module) -> nn.Module:
        """The module that maps :meth:`report_inputs` images to outputs, for attention maps (default: the model)."""
        return model

    # -- state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Task state that must survive a resume (tensors and primitives only). Default: none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"task {self.name!r} keeps no state, but the checkpoint holds task state with keys "
                             f"{sorted(state)}")
