"""DINO's loss: the student's softmax against the teacher's centred, sharpened softmax (Caron et al. 2021, eq. 1-3
and Algorithm 1), the center's EMA, the temperature and momentum schedules, and the collapse watch.

With ``V`` student views (2 global then the locals, each ``B`` images, view-major: rows ``v·B .. v·B + B - 1``)
and the 2 global views of the teacher::

    P_s(v) = softmax(s_v / τ_s)                       # (B, K) per student view
    P_t(i) = softmax((t_i - c) / τ_t)                  # (B, K) per teacher view, no gradient
    L = mean over pairs (i, v), v ≠ i, of  mean_b  - Σ_k P_t(i)[b, k] · log P_s(v)[b, k]
    c ← m c + (1 - m) · mean over all ranks' teacher rows of t

The pairs skip a student view that is the same global crop as the teacher's (``v == i``): ``2(V - 1)`` terms.
:class:`DinoLoss` computes all pairs at once (one ``einsum``); ``tests/test_dino_loss.py`` holds the loop written
out from the paper, which it must equal forward and backward.

Collapse (the paper's section 5.3, Fig. 7): the teacher output either goes uniform (every image's ``P_t`` near
``1/K``: per-image entropy near ``log K``) or is dominated by one dimension (every image picks the same prototype:
the entropy of the mean ``P_t`` over images near 0, i.e. its KL to the uniform near ``log K``). Both are tracked:
``teacher_entropy`` = mean per-image entropy, ``teacher_kl_uniform`` = KL(mean ``P_t`` ‖ uniform).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...comm import LOCAL, DistInfo, all_reduce_sum

__all__ = ["DinoLoss", "collapse_message", "teacher_momentum", "teacher_temperature", "teacher_stats"]

UNIFORM_COLLAPSE = 0.9
"""Uniform collapse when the mean per-image teacher entropy exceeds this share of ``log K``."""
ONE_DIM_COLLAPSE = math.log(2.0)
"""Dimension collapse when the mean teacher output's entropy is below this (≤ 2 prototypes used in effect)."""


def _wide(t: Tensor) -> Tensor:
    """At least float32 (autocast's bf16 / fp16 outputs are widened; float64 stays)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's per-epoch teacher temperature: ``linspace(warmup_temp, temp, warmup_epochs)[epoch]`` during the
    warmup, then ``temp`` (``main_dino.py``'s ``teacher_temp_schedule``)."""
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return float(warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1))


def teacher_momentum(step: int, total_steps: int, base: float, final: float = 1.0) -> float:
    """DINO's cosine momentum schedule (``cosine_scheduler(base, 1, epochs, iters)``) at update ``step`` (0-based)
    of ``total_steps``: ``final + (base - final) · (1 + cos(π · step / total_steps)) / 2`` — ``base`` at the first
    update, rising to ``final``."""
    fraction = step / max(total_steps, 1)
    return float(final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * fraction)))


def teacher_stats(teacher_logits: Tensor, center: Tensor, temp: float) -> tuple[Tensor, Tensor]:
    """``(per-image entropies (N,), KL(mean P_t ‖ uniform) ())`` of ``P_t = softmax((t - c) / temp)``, in nats."""
    z = (teacher_logits.float() - center) / temp  # (N, K)
    log_q = F.log_softmax(z, dim=-1)
    q = log_q.exp()
    entropy = -(q * log_q).sum(-1)  # (N,)
    mean_q = q.mean(0)  # (K,)
    kl = (mean_q * (torch.log(mean_q.clamp_min(1e-30)) + math.log(q.shape[-1]))).sum()  # KL(mean ‖ 1/K)
    return entropy, kl


def collapse_message(entropy: float, kl_uniform: float, out_dim: int) -> str | None:
    """A warning when the teacher statistics (mean per-image entropy, KL of the mean output to uniform) show a
    collapse, else None."""
    log_k = math.log(out_dim)
    if entropy > UNIFORM_COLLAPSE * log_k:
        return (f"DINO collapse: the teacher's outputs are near uniform (mean entropy {entropy:.3f} nats > "
                f"{UNIFORM_COLLAPSE:.0%} of log K = {log_k:.3f}); lower task.teacher_temp or raise "
                f"task.center_momentum")
    if log_k - kl_uniform < ONE_DIM_COLLAPSE:
        return (f"DINO collapse: one dimension dominates the teacher's outputs (entropy of the mean output "
                f"{log_k - kl_uniform:.3f} nats < log 2, KL to uniform {kl_uniform:.3f} of at most {log_k:.3f}); "
                f"raise task.teacher_temp or lower task.center_momentum")
    return None


class DinoLoss(nn.Module):
    """The loss of the module docstring. ``center``: buffer ``(1, out_dim)``, zeros at start (task state).

    ``forward(student, teacher, temp, info)``: student ``(V·B, K)`` logits (2 global views then the locals, view
    major), teacher ``(2·B, K)`` logits of the 2 global views; returns ``(loss, stats)`` with ``stats`` the batch's
    ``teacher_entropy`` ``(N,)`` per teacher row and ``teacher_kl_uniform`` ``()``. Then the center moves
    (a collective over ``info``'s ranks; a non-finite batch mean leaves it unchanged)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: Tensor, teacher: Tensor, temp: float, info: DistInfo = LOCAL,
                update_center: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        K = self.center.shape[-1]
        if student.ndim != 2 or teacher.ndim != 2 or student.shape[-1] != K or teacher.shape[-1] != K:
            raise ValueError(f"DinoLoss: expected student (V*B, {K}) and teacher (2*B, {K}) logits, got "
                             f"{tuple(student.shape)} and {tuple(teacher.shape)}")
        if teacher.shape[0] % 2 or student.shape[0] % (teacher.shape[0] // 2) or student.shape[0] < teacher.shape[0]:
            raise ValueError(f"DinoLoss: teacher rows must be 2 views of B images and student rows V >= 2 views of "
                             f"the same B, got {teacher.shape[0]} teacher and {student.shape[0]} student rows")
        B = teacher.shape[0] // 2
        V = student.shape[0] // B
        log_p = F.log_softmax(_wide(student) / self.student_temp, dim=-1).view(V, B, K)  # student views
        q = F.softmax((_wide(teacher.detach()) - self.center) / temp, dim=-1).view(2, B, K)  # teacher views
        ce = -torch.einsum("ibk,vbk->iv", q, log_p) / B  # (2, V): mean cross-entropy of every (teacher, student) pair
        same = torch.eye(2, V, dtype=torch.bool, device=ce.device)  # the student's copy of the teacher's view
        loss = ce.masked_fill(same, 0.0).sum() / (2 * V - 2)
        entropy, kl = teacher_stats(teacher.detach(), self.center, temp)
        if update_center:
            self.update_center(teacher.detach(), info)
        return loss, {"teacher_entropy": entropy, "teacher_kl_uniform": kl}

    @torch.no_grad()
    def update_center(self, teacher: Tensor, info: DistInfo = LOCAL) -> None:
        """``c ← m c + (1 - m) · (Σ over ranks of the teacher rows) / (rows · world size)`` (equal rows per rank)."""
        total = all_reduce_sum(teacher.float().sum(0, keepdim=True), info)  # (1, K)
        batch_center = total / (teacher.shape[0] * info.world_size)
        new = self.center * self.center_momentum + batch_center * (1.0 - self.center_momentum)
        self.center.copy_(torch.where(torch.isfinite(new).all(), new, self.center))
