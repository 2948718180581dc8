"""Self-supervised learning with DINO (Caron et al. 2021): self-distillation with no labels.

The trained model (the checkpoint's ``model`` weights) is the student, :class:`~visionattn.tasks.dino.head.
DinoModel`: any registered image backbone (``num_classes=0``) plus a :class:`~visionattn.tasks.dino.head.DinoHead`.
The teacher, a copy of it updated as an EMA of the student after each optimizer step, is task state (saved with
the loss's center in the checkpoint's ``task_state``); evaluation, ``visionattn eval``, the report's attention maps
and ``visionattn viz`` use the teacher, as the paper does, falling back to the student when there is none.

One update: the teacher sees the 2 global crops, the student all crops; loss = :class:`~visionattn.tasks.dino.
loss.DinoLoss`; before the optimizer step the head's last layer loses its gradient during the first
``task.freeze_last_layer_epochs`` epochs; after it the teacher moves towards the student.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from ...data import DataConfig
from ...models.config import ModelConfig, spec_overrides
from ..base import (
    EvalContext,
    Evaluation,
    LossOutput,
    PredictOptions,
    PredictOutput,
    ReportItem,
    StepContext,
    Task,
    TaskData,
)
from .data import build_dino_data
from .evaluation import evaluate_model
from .head import DinoHead, DinoModel, feature_width
from .loss import DinoLoss, teacher_momentum, teacher_temperature
from .options import DinoOptions
from .teacher import ema_update, make_teacher

__all__ = ["DinoTask", "DinoCollapseWarning", "build_dino_model", "DINO_DATASETS"]

DINO_DATASETS = ("fashion_mnist", "mnist", "images", "digits", "lfw", "folder", "cifar10", "cifar100", "csv")


class DinoCollapseWarning(UserWarning):
    """The teacher's outputs show a collapse (uniform, or one dimension dominating)."""


def _unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        inner = getattr(module, "module", None) if inner is None else inner
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def build_dino_model(model: ModelConfig, meta: dict, o: DinoOptions) -> DinoModel:
    """Backbone ``model.name`` (no classifier, ``meta["img_size"]``) + the head of ``o``; a ``ValueError`` when the
    backbone does not take images or the crop sizes are not multiples of its input multiple."""
    from ...models import create_model

    backbone = create_model(model.name, num_classes=0, img_size=meta["img_size"],
                            pretrained_path=model.pretrained_path, **spec_overrides(model))
    kind = getattr(backbone, "input_kind", "image")
    if kind != "image":
        raise ValueError(f"DINO trains image backbones; {model.name!r} takes {kind!r} inputs")
    multiple = int(getattr(backbone, "input_multiple", 1))
    for key, size in (("data.img_size", meta["img_size"]), ("task.local_size", o.local_size)):
        if size % multiple:
            raise ValueError(f"{key}: {model.name} takes sides that are multiples of {multiple}, got {size}")
    head = DinoHead(feature_width(backbone), o.out_dim, o.hidden_dim, o.bottleneck_dim, o.head_layers,
                    o.norm_last_layer)
    return DinoModel(backbone, head)


class DinoTask(Task):
    """Batches ``{"global": (B, 2, C, G, G), "local": (B, N, C, L, L)}`` in training and ``{"image", "label"}`` in
    evaluation (:mod:`~visionattn.tasks.dino.data`); evaluation: k-NN top-1 (primary), linear probe, teacher
    statistics (:mod:`~visionattn.tasks.dino.evaluation`)."""

    name = "dino"
    options_class = DinoOptions
    primary_metric = "knn_top1"
    higher_is_better = True
    default_config = "dino_fashion_mnist.yaml"
    datasets = DINO_DATASETS

    def __init__(self, options: DinoOptions | None = None):
        super().__init__(options)
        o = self.options
        self.criterion = DinoLoss(o.out_dim, o.student_temp, o.center_momentum)
        self.teacher: DinoModel | None = None
        self._student: DinoModel | None = None
        self._model_cfg: ModelConfig | None = None
        self._seed = 0
        self._epoch: int | None = None  # the epoch of the last training step (its teacher temperature scores eval)

    # -- data -----------------------------------------------------------------------------------------------------
    def build_data(self, data: DataConfig, seed: int) -> TaskData:
        self._seed = seed
        return build_dino_data(data, self.options)

    # -- model ----------------------------------------------------------------------------------------------------
    def build_model(self, model: ModelConfig, meta: dict) -> nn.Module:
        self._model_cfg = model
        self._student = build_dino_model(model, meta, self.options)
        return self._student

    def random_init_model(self, meta: dict) -> DinoModel:
        """The same architecture at the initialisation a run with this task's seed starts from (the global RNG is
        left as it was)."""
        if self._model_cfg is None:
            raise RuntimeError("DinoTask.random_init_model: build_model first")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._seed)
            return build_dino_model(self._model_cfg, meta, self.options)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """The teacher: a frozen copy of the student (DINO starts them equal); the center on ``device``."""
        if self.teacher is None:
            self.teacher = make_teacher(model, device)
        self.teacher.to(device)
        self.criterion.to(device)

    # -- training -------------------------------------------------------------------------------------------------
    def loss(self, module: nn.Module, batch: dict, ctx: StepContext) -> LossOutput:
        if self.teacher is None:
            raise RuntimeError("DinoTask.loss: no teacher (setup was not called)")
        g, local = batch["global"], batch["local"]  # (B, 2, C, G, G), (B, N, C, L, L)
        B = g.shape[0]
        globals_ = g.transpose(0, 1).reshape(2 * B, *g.shape[2:])  # (2B, C, G, G), view-major
        crops = [globals_]
        if local.shape[1]:
            crops.append(local.transpose(0, 1).reshape(-1, *local.shape[2:]))  # (N·B, C, L, L), view-major
        o = self.options
        self._epoch = ctx.progress.epoch
        temp = teacher_temperature(ctx.progress.epoch, o.warmup_teacher_temp, o.teacher_temp,
                                   o.warmup_teacher_temp_epochs)
        with torch.no_grad():
            teacher_out = self.teacher(globals_)  # (2B, K)
        student_out = module(crops)  # (V·B, K)
        loss, s = self.criterion(student_out, teacher_out, temp, ctx.info)
        entropy = s["teacher_entropy"]
        one = torch.ones((), device=loss.device)
        stats = {"teacher_entropy": (entropy.sum(), torch.tensor(float(entropy.numel()), device=loss.device)),
                 "teacher_kl_uniform": (s["teacher_kl_uniform"], one),
                 "kl_teacher_student": (loss.detach() - entropy.mean(), one)}  # CE = H(P_t) + KL(P_t ‖ P_s)
        return LossOutput(loss, {"dino": loss}, stats)

    def before_step(self, model: nn.Module, ctx: StepContext) -> None:
        """Drop the last layer's gradient during the first ``freeze_last_layer_epochs`` epochs (the paper's
        ``cancel_gradients_last_layer``: no update at all, weight decay included)."""
        if ctx.progress.epoch < self.options.freeze_last_layer_epochs:
            for p in _unwrap(model).head.last_layer_parameters():
                p.grad = None

    def after_update(self, model: nn.Module, ctx: StepContext) -> None:
        p = ctx.progress
        ema_update(self.teacher, _unwrap(model), teacher_momentum(p.step, p.total_steps, self.options.teacher_momentum))

    # -- evaluation -----------------------------------------------------------------------------------------------
    def _scored(self, model: nn.Module) -> DinoModel:
        """The teacher when there is one (on ``model``'s device), else ``model``."""
        model = _unwrap(model)
        if self.teacher is None:
            return model
        device = next(model.parameters()).device
        return self.teacher.to(device)

    def current_temperature(self) -> float:
        """The teacher temperature of the last training step (after the warmup when nothing was trained here)."""
        o = self.options
        epoch = o.warmup_teacher_temp_epochs if self._epoch is None else self._epoch
        return teacher_temperature(epoch, o.warmup_teacher_temp, o.teacher_temp, o.warmup_teacher_temp_epochs)

    def evaluate(self, model: nn.Module, data: TaskData, ctx: EvalContext) -> Evaluation:
        o = self.options
        net = self._scored(model)
        evaluation = evaluate_model(net, data, ctx, self.criterion.center, self.current_temperature(), o.knn_k,
                                    o.knn_temperature, o.linear_probe)
        if evaluation.details.collapse and ctx.info.is_main:
            warnings.warn(evaluation.details.collapse, DinoCollapseWarning, stacklevel=2)
        return evaluation

    def format_evaluation(self, evaluation: Evaluation, meta: dict) -> str:
        from .report import format_eval

        return format_eval(evaluation)

    # -- prediction and report ------------------------------------------------------------------------------------
    def predict(self, model: nn.Module, meta: dict, data: DataConfig, inputs: Sequence[str],
                options: PredictOptions, device: torch.device) -> PredictOutput:
        from .predict import predict_knn

        return predict_knn(self, self._scored(model), meta, data, inputs, options, device)

    def report(self, model: nn.Module, data: TaskData, evaluation: Evaluation | None,
               device: torch.device) -> list[ReportItem]:
        from .report import report_items

        return report_items(self, self._scored(model), data, evaluation, device)

    def attention_model(self, model: nn.Module) -> nn.Module:
        """The teacher's backbone (the student's without a teacher): images → pooled features."""
        return self._scored(model).backbone

    # -- state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The teacher's weights and the loss's center (CPU copies)."""
        if self.teacher is None:
            return {}
        return {"teacher": {k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()},
                "center": self.criterion.center.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return  # a checkpoint written before setup (nothing trained yet): the teacher starts from the student
        missing = {"teacher", "center"} - set(state)
        if missing:
            raise ValueError(f"task 'dino': the checkpoint's task state lacks {sorted(missing)}; expected keys "
                             f"'teacher' and 'center', got {sorted(state)}")
        if self.teacher is None:
            if self._student is None:
                raise RuntimeError("DinoTask.load_state_dict: build_model first (the teacher copies the student)")
            self.teacher = make_teacher(self._student)
        device = next(self.teacher.parameters()).device
        self.teacher.load_state_dict({k: v.to(device) for k, v in state["teacher"].items()})
        center = state["center"]
        if center.shape != self.criterion.center.shape:
            raise ValueError(f"task 'dino': checkpoint center has shape {tuple(center.shape)}, the head's out_dim "
                             f"gives {tuple(self.criterion.center.shape)}")
        self.criterion.center.copy_(center.to(self.criterion.center.device))
