"""The classification task's ``task:`` section: the DeiT recipe's label pieces (smoothing, Mixup/CutMix, hard
distillation)."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import TaskOptions

__all__ = ["ClassificationOptions"]


@dataclass
class ClassificationOptions(TaskOptions):
    """label_smoothing: for the class-token loss. mixup / cutmix: Beta alphas (0 = off) for ``timm.data.Mixup``
    with ``mixup_prob`` and ``mixup_switch_prob``. teacher + teacher_checkpoint: hard distillation through the
    distillation token (the student must be a distilled DeiT, e.g. ``deit_tiny_distilled_test``); the teacher is any
    registered preset loaded from that file; loss = (1 - distill_weight) * CE(cls, y) + distill_weight * CE(dist,
    argmax teacher)."""

    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    distill_weight: float = 0.5

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)", self.label_smoothing)
        need(self.mixup >= 0 and self.cutmix >= 0, "mixup/cutmix", "alphas >= 0", (self.mixup, self.cutmix))
        need(0 <= self.mixup_prob <= 1, "mixup_prob", "in [0, 1]", self.mixup_prob)
        need(0 <= self.mixup_switch_prob <= 1, "mixup_switch_prob", "in [0, 1]", self.mixup_switch_prob)
        need(0 <= self.distill_weight <= 1, "distill_weight", "in [0, 1]", self.distill_weight)
        need((self.teacher is None) == (self.teacher_checkpoint is None), "teacher and task.teacher_checkpoint",
             "both set or both null", (self.teacher, self.teacher_checkpoint))
        return out

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (Mixup or CutMix on)."""
        return bool(self.mixup or self.cutmix)
