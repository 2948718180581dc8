"""DINO's teacher: a copy of the student updated as an exponential moving average of its weights.

``θ_t ← m θ_t + (1 - m) θ_s`` after every optimizer step, ``m`` on DINO's cosine schedule from
``task.teacher_momentum`` (0.996) to 1 (:func:`~visionattn.tasks.dino.loss.teacher_momentum`). The teacher starts
equal to the student, never receives gradients and always runs in eval mode (no drop path; the paper builds its
teacher without stochastic depth). Buffers (BatchNorm running statistics of convolutional backbones) are copied
from the student: the teacher, in eval mode, would otherwise keep their initial values.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["make_teacher", "ema_update"]


def make_teacher(student: nn.Module, device: torch.device | None = None) -> nn.Module:
    """A frozen, eval-mode deep copy of ``student`` (on ``device`` when given)."""
    teacher = copy.deepcopy(student)
    if device is not None:
        teacher.to(device)
    teacher.requires_grad_(False)
    return teacher.eval()


def _local(t: Tensor) -> Tensor:
    """A parameter's whole value: FSDP2 shards are refused (the teacher holds whole copies)."""
    if hasattr(t, "full_tensor"):
        raise ValueError("the DINO teacher keeps whole parameters; FSDP-sharded students are not supported (run "
                         "without run.fsdp)")
    return t


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher ← momentum · teacher + (1 - momentum) · student`` for every parameter (matched by name, same
    shapes), buffers copied (see the module docstring)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"ema_update: momentum expected in [0, 1], got {momentum}")
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise ValueError(f"ema_update: teacher and student parameters differ, e.g. {missing}")
    for name, p_t in t_params.items():
        p_s = _local(s_params[name]).detach()
        p_t.mul_(momentum).add_(p_s.to(p_t.dtype), alpha=1.0 - momentum)
    s_buffers = dict(student.named_buffers())
    for name, b_t in teacher.named_buffers():
        b_t.copy_(_local(s_buffers[name]))
