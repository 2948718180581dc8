"""``query_padding_mask``: which queries are padding is said, not guessed from equal grids (issue 17, item 7).

Semantics, on every backend: a padded key is never attended (its k and v are zeroed first); a padded query has its q
zeroed first and outputs zeros, and no gradient reaches it. Default: the key padding mask for the queries only when
``q is k`` (one tensor: self-attention); otherwise no query is padding — in particular not a cross-attention query
whose position on an equal-sized grid coincides with a padded key (what the operator used to assume).
"""

from __future__ import annotations

import pytest
import torch

from visionattn.layers import Attention
from visionattn.ops import Global, Neighborhood, Window, attention, attention_probs, prepare_call

HEADS, HEAD_DIM = 2, 16  # 16: flex's compiled CUDA kernels take it too
GRID = (5, 6)
BACKENDS = ["reference", "blocked", "flex", "linear"]


def _form(backend):
    return "linear" if backend == "linear" else "softmax"


def _patterns(backend):
    return [Global()] if backend == "linear" else [Global(), Window(3, 1), Neighborhood(3)]


def _masks():
    keys = torch.zeros(2, *GRID, dtype=torch.bool)
    keys[0, -2:] = True
    keys[1, :, -1] = True
    queries = torch.zeros(2, *GRID, dtype=torch.bool)
    queries[0, 0] = True
    queries[1, 2:4, 1] = True
    return keys, queries


def _inputs(seed=0, fill=None, queries=None):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, *GRID, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    if fill is not None:
        q = torch.where(queries[..., None, None], fill, q)
    return q, k, v


def _cropped_global(q, k, v, keys, form):
    """Global attention of every query over its image's unpadded keys only (the padded keys cropped away)."""
    out = []
    for b in range(q.shape[0]):
        keep = ~keys[b].reshape(-1)
        kb, vb = (t[b].reshape(-1, HEADS, HEAD_DIM)[keep][None] for t in (k, v))  # (1, N_valid, h, d)
        out.append(attention(q[b : b + 1].reshape(1, -1, HEADS, HEAD_DIM), kb, vb, Global(), form=form,
                             backend="reference").reshape(1, *GRID, HEADS, HEAD_DIM))
    return torch.cat(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_attention_on_equal_grids_keeps_queries_at_padded_key_positions(backend):
    """Separate q and k tensors on equal grids, key padding only: every query attends (none is zeroed), exactly as
    the same queries attend the keys that remain when the padded ones are cut away."""
    keys, _ = _masks()
    q, k, v = _inputs()
    with torch.no_grad():
        got = attention(q, k, v, Global(), form=_form(backend), backend=backend, key_padding_mask=keys)
        want = _cropped_global(q, k, v, keys, _form(backend))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)
    assert got[keys].abs().amin() > 0  # queries at padded key positions kept their own output


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_queries_output_zeros_and_nan_never_leaks(backend):
    """Explicit query padding (queries filled with NaN or 123): padded outputs are zeros, the others are
    bit-identical to each other and equal the reference, and so are the gradients (zero at padded queries)."""
    keys, queries = _masks()
    grad = backend != "flex"  # FlexAttention has no CPU backward
    for pattern in _patterns(backend):
        results = []
        for name, fill in ((backend, float("nan")), (backend, 123.0), ("reference", 0.0)):
            q, k, v = (t.requires_grad_(grad) for t in _inputs(fill=fill, queries=queries))
            with torch.set_grad_enabled(grad):
                out = attention(q, k, v, pattern, form=_form(backend), backend=name, key_padding_mask=keys,
                                query_padding_mask=queries)
            assert torch.equal(out[queries], torch.zeros_like(out[queries])), (pattern, name)
            if grad:
                out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(3)))
                assert torch.equal(q.grad[queries], torch.zeros_like(q.grad[queries]))
            results.append([out.detach()] + ([q.grad[~queries], k.grad, v.grad] if grad else []))
        for a, b, ref in zip(*results, strict=True):
            assert torch.isfinite(a).all() and torch.equal(a, b), pattern
            torch.testing.assert_close(a, ref, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("backend", ["reference", "blocked"])
def test_q_is_k_means_self_attention(backend):
    """Without a query mask, ``attention(x, x, v, key_padding_mask=m)`` treats x's padded tokens as padded queries
    too; separate tensors with the same values do not."""
    keys, _ = _masks()
    x, _, v = _inputs(seed=1)
    with torch.no_grad():
        same = attention(x, x, v, Global(), backend=backend, key_padding_mask=keys)
        explicit = attention(x, x.clone(), v, Global(), backend=backend, key_padding_mask=keys,
                             query_padding_mask=keys)
        separate = attention(x, x.clone(), v, Global(), backend=backend, key_padding_mask=keys)
    assert torch.equal(same, explicit) and torch.equal(same[keys], torch.zeros_like(same[keys]))
    torch.testing.assert_close(same[~keys], separate[~keys])
    assert separate[keys].abs().amin() > 0


def test_attention_probs_rows_of_padded_queries_are_zero():
    keys, queries = _masks()
    q, k, v = _inputs()
    call = prepare_call(q, k, v, Neighborhood(3), key_padding_mask=keys, query_padding_mask=queries)
    probs = attention_probs(call)  # (B, h, N_q, N_k)
    padded = queries.reshape(2, 1, -1)
    assert torch.equal(probs.sum(-1) == 0, padded.expand(-1, HEADS, -1))


def test_query_padding_mask_errors_say_expected_and_got():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match=r"query_padding_mask must be bool \(2, 5, 6\).*got torch.bool \(2, 5\)"):
        attention(q, k, v, Global(), query_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"query_padding_mask must be bool \(2, 5, 6\).*got torch.int64"):
        attention(q, k, v, Global(), query_padding_mask=torch.zeros(2, 5, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="query_padding_mask must be a bool tensor, got list"):
        attention(q, k, v, Global(), query_padding_mask=[[True]])


def test_layer_cross_attention_on_equal_grids_needs_no_extra_key():
    """``layers.Attention`` passes the key mask as the query mask for self-attention only: cross-attention on an
    equal grid is the plain operator call (no appended always-masked key), self-attention zeroes padded queries."""
    keys, _ = _masks()
    g = torch.Generator().manual_seed(4)
    layer = Attention(32, HEADS, Global(), cross=True, dims=2)
    x, context = torch.randn(2, *GRID, 32, generator=g), torch.randn(2, *GRID, 32, generator=g)
    seen = []
    from visionattn.ops import observe_attention

    with torch.no_grad(), observe_attention(lambda call, out: seen.append(call)):
        layer(x, context, key_padding_mask=keys)
        self_layer = Attention(32, HEADS, Global(), dims=2)
        self_layer(x, key_padding_mask=keys)
    assert seen[0].kv_grid == GRID and seen[0].query_padding_mask is None
    assert torch.equal(seen[1].query_padding_mask, keys)
