"""The DINO task's ``task:`` section (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers"; defaults follow the paper's ``main_dino.py`` where they do not depend on ImageNet's scale).

The global crop size is ``data.img_size`` (also the evaluation size); the local crop size is ``task.local_size``.
Both must be multiples of the backbone's input multiple (a ViT's patch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import TaskOptions

__all__ = ["DinoOptions"]


@dataclass
class DinoOptions(TaskOptions):
    """Head: ``head_layers``-layer MLP ``backbone width → hidden_dim → ... → bottleneck_dim``, L2-normalised, then a
    weight-normalised ``bottleneck_dim → out_dim`` layer (K prototypes) whose norm is frozen at 1 when
    ``norm_last_layer``; the last layer's gradient is dropped during the first ``freeze_last_layer_epochs`` epochs.

    Multi-crop: 2 global crops (``data.img_size``, area ``global_scale``) and ``local_crops`` local crops
    (``local_size``, area ``local_scale``); flip, colour jitter of strength ``jitter`` (brightness = contrast =
    ``jitter``, saturation ``jitter / 2``, hue ``jitter / 4``, p = 0.8), grayscale (p = 0.2), Gaussian blur
    (``blur``: p = 1 / 0.1 / 0.5 on global 1 / global 2 / locals) and solarization (``solarize``: p = 0.2 on global 2).

    Loss: cross-entropy between the teacher's centred, sharpened softmax (temperature ``warmup_teacher_temp`` rising
    linearly to ``teacher_temp`` over ``warmup_teacher_temp_epochs`` epochs, then constant) and the student's softmax
    at ``student_temp``, over every (global teacher view, other student view) pair. The center is an EMA (momentum
    ``center_momentum``) of the teacher's batch mean, summed over ranks.

    Teacher: EMA of the student with momentum rising from ``teacher_momentum`` to 1 on a cosine over the updates.

    Evaluation (frozen features, L2-normalised): weighted k-NN (``knn_k`` neighbours, weights
    ``exp(cos / knn_temperature)``) and, when ``linear_probe``, a linear probe; the k-NN bank is the training set
    without augmentation, or a stratified subset of ``eval_bank_size`` images of it (None = all).
    ``report_baselines``: the run report also scores the same architecture at random init and raw pixels."""

    out_dim: int = 1024
    hidden_dim: int = 512
    bottleneck_dim: int = 64
    head_layers: int = 3
    norm_last_layer: bool = True
    freeze_last_layer_epochs: int = 1
    local_crops: int = 6
    local_size: int = 12
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    jitter: float = 0.4
    blur: bool = True
    solarize: bool = True
    hflip: bool = True
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    teacher_momentum: float = 0.996
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_probe: bool = True
    eval_bank_size: int | None = None
    report_baselines: bool = True

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``task.key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.out_dim >= 2, "out_dim", ">= 2", self.out_dim)
        need(self.hidden_dim >= 1 and self.bottleneck_dim >= 1, "hidden_dim/bottleneck_dim", ">= 1",
             (self.hidden_dim, self.bottleneck_dim))
        need(self.head_layers >= 1, "head_layers", ">= 1", self.head_layers)
        need(self.freeze_last_layer_epochs >= 0, "freeze_last_layer_epochs", ">= 0", self.freeze_last_layer_epochs)
        need(self.local_crops >= 0, "local_crops", ">= 0", self.local_crops)
        need(self.local_size >= 1, "local_size", ">= 1", self.local_size)
        for key in ("global_scale", "local_scale"):
            lo, hi = getattr(self, key)
            need(0 < lo <= hi <= 1, key, "0 < low <= high <= 1", getattr(self, key))
        need(self.jitter >= 0, "jitter", ">= 0", self.jitter)
        for key in ("student_temp", "teacher_temp", "warmup_teacher_temp", "knn_temperature"):
            need(getattr(self, key) > 0, key, "> 0", getattr(self, key))
        need(self.warmup_teacher_temp_epochs >= 0, "warmup_teacher_temp_epochs", ">= 0",
             self.warmup_teacher_temp_epochs)
        need(0 <= self.center_momentum < 1, "center_momentum", "in [0, 1)", self.center_momentum)
        need(0 <= self.teacher_momentum <= 1, "teacher_momentum", "in [0, 1]", self.teacher_momentum)
        need(self.knn_k >= 1, "knn_k", ">= 1", self.knn_k)
        need(self.eval_bank_size is None or self.eval_bank_size >= 1, "eval_bank_size", "None or >= 1",
             self.eval_bank_size)
        return out
