"""Scoring frozen features: DINO's weighted k-NN classifier and a linear probe (multinomial logistic regression).

Weighted k-NN (Wu et al. 2018, as DINO's ``eval_knn.py``): features are L2-normalised; for each query the ``k``
training features of highest cosine similarity ``s_j`` vote for their labels with weight ``exp(s_j / T)``; the
class scores are the summed votes (``k = 20``, ``T = 0.07`` in the paper).

Linear probe: features standardised with the training set's mean and standard deviation, then
``W, b = argmin mean_i CE(W x_i + b, y_i) + (λ / 2) ‖W‖²`` by full-batch L-BFGS (strong Wolfe line search), from
zero. The objective is strictly convex, so the result is the unique optimum: scikit-learn's
``LogisticRegression(C=1 / (λ n))`` is the same model (tested). This is the cheap "logistic regression on frozen
features" probe (as CLIP's), not DINO's 100-epoch SGD with augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PROBE_WEIGHT_DECAY", "knn_scores", "linear_probe", "topk_correct"]

PROBE_WEIGHT_DECAY = 1e-4
"""λ of the linear probe (on standardised features)."""


def knn_scores(bank: Tensor, bank_labels: Tensor, queries: Tensor, num_classes: int, k: int = 20,
               temperature: float = 0.07, chunk: int = 1024) -> Tensor:
    """Class scores ``(Q, num_classes)`` of ``queries`` ``(Q, C)`` from ``bank`` ``(N, C)`` with int labels
    ``(N,)`` in ``0..num_classes - 1`` (see the module docstring; ``k`` is capped at ``N``). Computed in float32,
    ``chunk`` queries at a time."""
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1] or len(bank_labels) != len(bank):
        raise ValueError(f"knn_scores: expected bank (N, C), labels (N,) and queries (Q, C), got "
                         f"{tuple(bank.shape)}, {tuple(bank_labels.shape)}, {tuple(queries.shape)}")
    if len(bank) == 0:
        raise ValueError("knn_scores: the bank is empty; expected at least one labelled feature")
    labels = bank_labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"knn_scores: bank labels expected in 0..{num_classes - 1}, got {int(labels.min())}.."
                         f"{int(labels.max())}")
    k = min(int(k), len(bank))
    bank = F.normalize(bank.float(), dim=1)
    out = []
    for q in queries.float().split(chunk):
        sim = F.normalize(q, dim=1) @ bank.T  # (n, N) cosine similarities
        top, idx = sim.topk(k, dim=1)  # (n, k), largest first
        votes = (top / temperature).exp()  # (n, k)
        out.append(torch.zeros(len(q), num_classes, device=q.device).scatter_add_(1, labels[idx], votes))
    return torch.cat(out) if out else queries.new_zeros(0, num_classes)


def topk_correct(scores: Tensor, labels: Tensor, k: int) -> int:
    """How many rows of ``scores`` ``(Q, classes)`` have their label among their ``k`` highest scores."""
    k = min(k, scores.shape[1])
    return int((scores.topk(k, dim=1).indices == labels.view(-1, 1)).any(dim=1).sum())


def linear_probe(train: Tensor, train_labels: Tensor, test: Tensor, num_classes: int,
                 weight_decay: float = PROBE_WEIGHT_DECAY, max_iter: int = 200) -> Tensor:
    """Logits ``(Q, num_classes)`` of ``test`` from the probe fitted on ``train`` ``(N, C)`` with labels ``(N,)``
    (see the module docstring). Deterministic for a given device."""
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1] or len(train_labels) != len(train):
        raise ValueError(f"linear_probe: expected train (N, C), labels (N,) and test (Q, C), got "
                         f"{tuple(train.shape)}, {tuple(train_labels.shape)}, {tuple(test.shape)}")
    x = train.double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    y = train_labels.long()
    W = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + 0.5 * weight_decay * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return (((test.double() - mean) / std) @ W + b).float()
