"""The CPU kernels' speed devices keep the math: biased attention in cache-sized chunks (issue 17) equals one
whole pass, forward and backward, for every way the bias broadcasts; and the masked (no-grad) forward agrees."""

from __future__ import annotations

import pytest
import torch

from visionattn.ops.backends import biased_sdpa

SHAPES = [  # q shape, bias shape (None: no bias)
    ((1, 40, 3, 9, 8), (1, 1, 3, 9, 9)),  # a group's windows sharing one bias (the blocked backend's groups)
    ((1, 40, 3, 9, 8), (1, 40, 3, 9, 9)),  # one bias per window (key padding combined with the bias)
    ((40, 3, 9, 8), (3, 9, 9)),  # fewer leading dims than q
    ((1, 40, 3, 9, 8), (1, 40, 1, 1, 9)),  # a key mask per window, broadcast over heads and queries
    ((2, 3, 5, 4), None),
]


def _dense(q, k, v, bias, scale):
    scores = q @ k.transpose(-1, -2) * scale + (0 if bias is None else bias)
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("q_shape, bias_shape", SHAPES, ids=[str(s[1]) for s in SHAPES])
def test_chunked_biased_attention_equals_one_pass(monkeypatch, q_shape, bias_shape):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*q_shape, generator=g, requires_grad=True) for _ in range(3))
    bias = None if bias_shape is None else torch.randn(*bias_shape, generator=g, requires_grad=True)
    leaves = [q, k, v] + ([bias] if bias is not None else [])
    results = []
    for chunk_bytes in (1 << 30, 200):  # one chunk; one batch row per chunk
        monkeypatch.setattr(biased_sdpa, "CHUNK_BYTES", chunk_bytes)
        assert (len(biased_sdpa._chunks(q, k)[1]) > 1) == (chunk_bytes == 200)
        out = biased_sdpa.biased_attention(q, k, v, bias, 0.3)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append([out.detach(), *torch.autograd.grad(out, leaves, cot)])
        with torch.no_grad():
            torch.testing.assert_close(biased_sdpa.masked_attention(q, k, v, bias, None, 0.3), out)
    want = _dense(q, k, v, bias, 0.3)
    results.append([want.detach(), *torch.autograd.grad(want, leaves, cot)])
    for got in results[:2]:
        for a, b in zip(got, results[2], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
