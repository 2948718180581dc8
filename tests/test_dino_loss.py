"""DINO's loss, center, head, schedules and collapse watch against the paper written out directly (Caron et al. 2021,
Algorithm 1 and ``main_dino.py`` / ``vision_transformer.py``), on seeded random tensors (never zeros), forward and
backward: the trusted twin of the task's vectorised code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visionattn.comm import DistInfo
from visionattn.tasks.dino import loss as dino_loss
from visionattn.tasks.dino.head import DinoHead, DinoModel
from visionattn.tasks.dino.loss import (
    DinoLoss,
    collapse_message,
    teacher_momentum,
    teacher_stats,
    teacher_temperature,
)


# -- the paper, written out ----------------------------------------------------------------------------------------
def paper_loss(student_output, teacher_output, center, student_temp, teacher_temp, ncrops):
    """``DINOLoss.forward`` of main_dino.py, line by line."""
    student_out = student_output / student_temp
    student_out = student_out.chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / teacher_temp, dim=-1)
    teacher_out = teacher_out.detach().chunk(2)
    total_loss, n_loss_terms = 0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue  # the student's copy of the teacher's own view
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def paper_center(center, teacher_output, momentum, world_size=1, other_ranks_sum=None):
    """``DINOLoss.update_center``: batch_center = all_reduce(sum) / (len * world_size); EMA."""
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
    if other_ranks_sum is not None:
        batch_center = batch_center + other_ranks_sum
    batch_center = batch_center / (len(teacher_output) * world_size)
    return center * momentum + batch_center * (1 - momentum)


def paper_head(head: DinoHead, x):
    """The head's equations: Linear-GELU-Linear-GELU-Linear, z = h / ||h||, y_k = g_k v_k . z / ||v_k||."""
    lins = [m for m in head.mlp.modules() if isinstance(m, torch.nn.Linear)]
    h = x
    for i, lin in enumerate(lins):
        h = h @ lin.weight.T + lin.bias
        if i < len(lins) - 1:
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
    z = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    g = head.last_layer.parametrizations.weight.original0  # (K, 1)
    v = head.last_layer.parametrizations.weight.original1  # (K, bottleneck)
    return z @ (g * v / v.norm(dim=1, keepdim=True)).T


# -- loss ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ncrops,B,K", [(2, 3, 7), (8, 4, 16), (5, 1, 11)])
def test_loss_equals_the_paper_forward_and_backward(ncrops, B, K):
    g = torch.Generator().manual_seed(ncrops * 100 + B)
    student = torch.randn(ncrops * B, K, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(2 * B, K, generator=g, dtype=torch.float64) * 2
    center = torch.randn(1, K, generator=g, dtype=torch.float64)
    ours = DinoLoss(K, student_temp=0.1, center_momentum=0.9).double()
    ours.center.copy_(center)
    s1 = student.clone().requires_grad_(True)
    s2 = student.clone().requires_grad_(True)
    got, stats = ours(s1, teacher, temp=0.04, update_center=False)
    want = paper_loss(s2, teacher, center, 0.1, 0.04, ncrops)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)
    got.backward()
    want.backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-6, atol=1e-12)
    assert float(want) > 0 and s2.grad.abs().sum() > 0  # not vacuous


def test_pairs_skip_the_student_copy_of_the_teacher_view():
    """The gradient reaching student global view 0 comes from teacher view 1 only (and view 1's from view 0)."""
    B, K, V = 2, 5, 4
    g = torch.Generator().manual_seed(3)
    student = torch.randn(V * B, K, generator=g, requires_grad=True)
    teacher = torch.randn(2 * B, K, generator=g)
    ours = DinoLoss(K)
    loss, _ = ours(student, teacher, temp=0.07, update_center=False)
    loss.backward()
    q1 = F.softmax(teacher[B:] / 0.07, dim=-1)  # teacher view 1
    p0 = F.softmax(student.detach()[:B] / 0.1, dim=-1)
    # d/ds of mean_b CE(q, softmax(s/τ)) = (p - q) / (τ B); one of 2(V-1) terms
    expected = (p0 - q1) / (0.1 * B) / (2 * (V - 1))
    torch.testing.assert_close(student.grad[:B], expected, rtol=1e-5, atol=1e-7)


def test_center_update_equals_the_paper_and_is_reduced_over_ranks(monkeypatch):
    K, B = 9, 4
    g = torch.Generator().manual_seed(5)
    teacher = torch.randn(2 * B, K, generator=g)
    other = torch.randn(1, K, generator=g) * 4  # what the other rank's teacher rows sum to
    ours = DinoLoss(K, center_momentum=0.9)
    start = torch.randn(1, K, generator=g)
    ours.center.copy_(start)
    ours(torch.randn(4 * B, K, generator=g), teacher, temp=0.04)
    torch.testing.assert_close(ours.center, paper_center(start, teacher, 0.9))
    # two ranks: the batch sum is all-reduced and divided by rows * world size
    seen = []

    def fake_all_reduce_sum(value, info):
        seen.append(info.world_size)
        return value + other

    monkeypatch.setattr(dino_loss, "all_reduce_sum", fake_all_reduce_sum)
    ours.center.copy_(start)
    two = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), is_main=True)
    ours.update_center(teacher, two)
    assert seen == [2]
    torch.testing.assert_close(ours.center, paper_center(start, teacher, 0.9, world_size=2, other_ranks_sum=other))


def test_the_loss_uses_the_center_before_updating_it():
    K, B = 6, 3
    g = torch.Generator().manual_seed(8)
    student, teacher = torch.randn(2 * B, K, generator=g), torch.randn(2 * B, K, generator=g)
    ours = DinoLoss(K)
    ours.center.copy_(torch.randn(1, K, generator=g))
    before = ours.center.clone()
    got, _ = ours(student, teacher, temp=0.05)
    torch.testing.assert_close(got, paper_loss(student, teacher, before, 0.1, 0.05, 2))
    assert not torch.equal(ours.center, before)


def test_a_non_finite_batch_leaves_the_center_unchanged():
    ours = DinoLoss(4)
    ours.center.copy_(torch.arange(4.0).view(1, 4))
    bad = torch.randn(4, 4)
    bad[1, 2] = float("nan")
    ours.update_center(bad)
    assert torch.equal(ours.center, torch.arange(4.0).view(1, 4))


def test_loss_refuses_bad_shapes():
    ours = DinoLoss(8)
    with pytest.raises(ValueError, match=r"expected student \(V\*B, 8\) and teacher \(2\*B, 8\) logits, got"):
        ours(torch.randn(4, 7), torch.randn(4, 7), 0.04)
    with pytest.raises(ValueError, match="teacher rows must be 2 views of B images"):
        ours(torch.randn(6, 8), torch.randn(3, 8), 0.04)
    with pytest.raises(ValueError, match="V >= 2 views"):
        ours(torch.randn(2, 8), torch.randn(4, 8), 0.04)


# -- head ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_head_equals_the_equations_forward_and_backward(layers):
    torch.manual_seed(layers)
    head = DinoHead(12, 20, hidden_dim=16, bottleneck_dim=6, layers=layers).double()
    with torch.no_grad():  # g away from 1 and random biases, so that every term of the equations matters
        head.last_layer.parametrizations.weight.original0.uniform_(0.5, 2.0)
        for m in head.mlp.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.normal_()
    x1 = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    got, want = head(x1), paper_head(head, x2)
    torch.testing.assert_close(got, want)
    w = torch.randn_like(got)
    (got * w).sum().backward()
    (want * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_head_norm_is_frozen_at_one_and_the_mlp_is_trunc_normal():
    torch.manual_seed(0)
    head = DinoHead(32, 64, hidden_dim=48, bottleneck_dim=8)
    g = head.last_layer.parametrizations.weight.original0
    assert torch.equal(g, torch.ones(64, 1)) and not g.requires_grad
    assert head.last_layer.parametrizations.weight.original1.requires_grad
    lins = [m for m in head.mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in lins] == [(48, 32), (48, 48), (8, 48)]
    weights = torch.cat([m.weight.detach().flatten() for m in lins])
    assert float(weights.std()) == pytest.approx(0.02, rel=0.05) and not any(m.bias.any() for m in lins)
    # each output is a cosine between the normalised bottleneck and a prototype: |y| <= 1
    y = head(torch.randn(10, 32) * 50)
    assert float(y.abs().max()) <= 1 + 1e-5
    assert DinoHead(32, 64, norm_last_layer=False).last_layer.parametrizations.weight.original0.requires_grad
    with pytest.raises(ValueError, match="layers expected >= 1, got 0"):
        DinoHead(4, 4, layers=0)


def test_multi_crop_forward_equals_one_call_per_crop():
    from visionattn.models import create_model

    torch.manual_seed(0)
    backbone = create_model("vit_tiny_test", num_classes=0, img_size=16, patch=4)
    model = DinoModel(backbone, DinoHead(32, 10, hidden_dim=8, bottleneck_dim=4)).eval()
    g, local = torch.randn(4, 3, 16, 16), torch.randn(6, 3, 8, 8)
    out = model([g[:2], g[2:], local])
    want = torch.cat([model(g), model(local)])
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    assert out.shape == (10, 10)
    with pytest.raises(ValueError, match=r"expected a \(B, C, H, W\) tensor or a non-empty sequence"):
        model([torch.randn(3, 16, 16)])


# -- schedules and collapse ---------------------------------------------------------------------------------------
def test_schedules_equal_main_dino():
    # cosine_scheduler(0.996, 1, epochs, niter_per_ep): final + 0.5 (base - final)(1 + cos(pi i / len))
    total = 37
    iters = np.arange(total)
    want = 1 + 0.5 * (0.996 - 1) * (1 + np.cos(np.pi * iters / len(iters)))
    got = [teacher_momentum(i, total, 0.996) for i in range(total)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert got[0] == pytest.approx(0.996) and got[-1] < 1 and teacher_momentum(total, total, 0.996) == 1.0
    # teacher_temp_schedule = concat(linspace(warmup, temp, warmup_epochs), ones(rest) * temp)
    for warmup_epochs in (0, 1, 4):
        sched = np.concatenate((np.linspace(0.04, 0.07, warmup_epochs), np.ones(10 - warmup_epochs) * 0.07))
        np.testing.assert_allclose([teacher_temperature(e, 0.04, 0.07, warmup_epochs) for e in range(10)], sched,
                                   rtol=0, atol=1e-15)


def test_teacher_stats_and_collapse_watch():
    K = 32
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, K, generator=g)
    center = torch.randn(1, K, generator=g) * 0.1
    entropy, kl = teacher_stats(logits, center, 0.5)
    q = F.softmax((logits - center) / 0.5, dim=-1)
    torch.testing.assert_close(entropy, -(q * q.log()).sum(-1))
    mean = q.mean(0)
    torch.testing.assert_close(kl, (mean * (mean * K).log()).sum())
    log_k = math.log(K)
    # healthy: each image sharp on its own prototype, the prototypes spread over the images
    sharp = torch.eye(K)[torch.arange(50) % K] * 30
    e, k = teacher_stats(sharp, torch.zeros(1, K), 1.0)
    assert collapse_message(float(e.mean()), float(k), K) is None
    # uniform collapse: every output flat
    e, k = teacher_stats(torch.zeros(50, K) + 0.01 * torch.randn(50, K, generator=g), torch.zeros(1, K), 1.0)
    assert float(e.mean()) > 0.99 * log_k
    assert "near uniform" in collapse_message(float(e.mean()), float(k), K)
    # one dimension dominates: every image picks prototype 3
    one = torch.zeros(50, K)
    one[:, 3] = 30
    e, k = teacher_stats(one, torch.zeros(1, K), 1.0)
    assert float(k) > 0.99 * log_k
    assert "one dimension dominates" in collapse_message(float(e.mean()), float(k), K)
