"""The frozen-feature scores: the weighted k-NN against a per-query loop written from DINO's ``knn_classifier`` and
against scikit-learn's ``KNeighborsClassifier`` (cosine metric, weights exp(cos / T)); the linear probe against
scikit-learn's ``LogisticRegression`` (the same strictly convex objective); bad inputs named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visionattn.tasks.dino.knn import knn_scores, linear_probe, topk_correct


def loop_knn(bank, labels, queries, classes, k, T):
    """One query at a time: cosine to every bank row, the k largest, vote exp(s / T) for their labels."""
    out = torch.zeros(len(queries), classes, dtype=torch.float64)
    b = bank.double() / bank.double().norm(dim=1, keepdim=True)
    for i, q in enumerate(queries.double()):
        q = q / q.norm()
        sims = [(float(torch.dot(q, row)), int(lab)) for row, lab in zip(b, labels, strict=True)]
        for s, lab in sorted(sims, reverse=True)[:k]:
            out[i, lab] += math.exp(s / T)
    return out


def _data(n=120, q=30, c=9, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, c, generator=g) * 2
    bank_y = torch.randint(0, classes, (n,), generator=g)
    bank = centres[bank_y] + torch.randn(n, c, generator=g)
    val_y = torch.randint(0, classes, (q,), generator=g)
    val = centres[val_y] + torch.randn(q, c, generator=g)
    return bank, bank_y, val, val_y


@pytest.mark.parametrize("k,chunk", [(20, 1024), (5, 7), (500, 4)])
def test_knn_equals_the_loop(k, chunk):
    bank, bank_y, val, _ = _data()
    got = knn_scores(bank * 3.7, bank_y, val, 4, k=k, temperature=0.07, chunk=chunk)  # scale: cosine ignores it
    want = loop_knn(bank, bank_y, val, 4, min(k, len(bank)), 0.07)
    torch.testing.assert_close(got.double(), want, rtol=2e-4, atol=0)
    assert (got > 0).sum(1).min() >= 1


def test_knn_predictions_equal_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    bank, bank_y, val, _ = _data(n=300, q=80, c=16, classes=6, seed=1)
    T = 0.07
    sk = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                              weights=lambda d: np.exp((1.0 - d) / T))  # cosine distance = 1 - similarity
    sk.fit(bank.numpy().astype(np.float64), bank_y.numpy())
    ours = knn_scores(bank, bank_y, val, 6, k=20, temperature=T).argmax(1).numpy()
    assert (ours == sk.predict(val.numpy().astype(np.float64))).all()


def test_topk_correct():
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    assert topk_correct(scores, labels, 1) == 1
    assert topk_correct(scores, labels, 2) == 2
    assert topk_correct(scores, labels, 10) == 3  # k capped at the class count


def test_linear_probe_equals_scikit_learn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    bank, bank_y, val, _ = _data(n=200, q=60, c=6, classes=3, seed=2)
    lam = 1e-2
    logits = linear_probe(bank, bank_y, val, 3, weight_decay=lam)
    x = bank.double().numpy()
    mean, std = x.mean(0), x.std(0)
    sk = LogisticRegression(C=1.0 / (lam * len(x)), tol=1e-10, max_iter=5000)
    sk.fit((x - mean) / std, bank_y.numpy())
    want = sk.decision_function((val.double().numpy() - mean) / std)
    # softmax logits are defined up to a per-row constant: compare centred logits
    got = logits.double().numpy()
    np.testing.assert_allclose(got - got.mean(1, keepdims=True), want - want.mean(1, keepdims=True), atol=2e-3)


def test_linear_probe_separates_separable_data():
    bank, bank_y, val, val_y = _data(n=200, q=100, c=8, classes=3, seed=3)
    bank, val = bank * 0.1 + torch.eye(3, 8)[bank_y] * 5, val * 0.1 + torch.eye(3, 8)[val_y] * 5
    assert topk_correct(linear_probe(bank, bank_y, val, 3), val_y, 1) == 100


def test_bad_inputs_are_named():
    bank, bank_y, val, _ = _data()
    with pytest.raises(ValueError, match=r"expected bank \(N, C\), labels \(N,\) and queries \(Q, C\), got"):
        knn_scores(bank, bank_y, val[:, :3], 4)
    with pytest.raises(ValueError, match="bank labels expected in 0..2, got 0..3"):
        knn_scores(bank, bank_y, val, 3)
    with pytest.raises(ValueError, match="the bank is empty"):
        knn_scores(bank[:0], bank_y[:0], val, 4)
    with pytest.raises(ValueError, match=r"linear_probe: expected train \(N, C\)"):
        linear_probe(bank, bank_y[:5], val, 4)
