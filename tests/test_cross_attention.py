"""``layers.Attention`` as cross-attention (queries from x, keys/values from a context), still one operator call
with ``Global()``: equal to ``softmax(QKᵀ/√d + mask) V`` written out (forward and backward, 1D and 2D grids of
different sizes, key padding over the context), and to ``torch.nn.MultiheadAttention`` with copied weights —
including DETR's positional embeddings added to queries and keys but not values (decoder cross-attention and
encoder self-attention)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visionattn.layers import Attention
from visionattn.ops import BACKENDS, Global, intercept_attention

DIM, HEADS = 16, 2


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module


def _math(layer: Attention, x, context, mask=None, query_pos=None, key_pos=None):
    """The definition: per head softmax(q kᵀ / √d, padded keys → -inf) v, heads concatenated, output projection."""
    inner = layer.heads * layer.head_dim
    if layer.split:
        wq, bq = layer.q.weight, layer.q.bias
        wk, wv = layer.kv.weight[:inner], layer.kv.weight[inner:]
        bk, bv = layer.kv.bias[:inner], layer.kv.bias[inner:]
    else:
        wq, wk, wv = layer.qkv.weight.split(inner)
        bq, bk, bv = layer.qkv.bias.split(inner)
    B, C = x.shape[0], context.shape[-1]
    xq = (x if query_pos is None else x + query_pos).reshape(B, -1, x.shape[-1])  # (B, Nq, dim)
    xk = (context if key_pos is None else context + key_pos).reshape(B, -1, C)  # (B, Nk, kv_dim)
    xv = context.reshape(B, -1, C)
    h, d = layer.heads, layer.head_dim
    q = (xq @ wq.T + bq).reshape(B, -1, h, d).transpose(1, 2)  # (B, h, Nq, d)
    k = (xk @ wk.T + bk).reshape(B, -1, h, d).transpose(1, 2)  # (B, h, Nk, d)
    v = (xv @ wv.T + bv).reshape(B, -1, h, d).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, h, Nq, Nk)
    if mask is not None:
        logits = logits.masked_fill(mask.reshape(B, 1, 1, -1), float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, h * d)  # (B, Nq, h·d)
    return layer.proj(out).reshape(*x.shape[:-1], layer.dim)


CASES = [  # (query grid, context grid, kv_dim)
    ((5,), (9,), 12),
    ((3, 4), (6, 5), 12),
    ((7,), (7,), DIM),
]


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize(("q_grid", "kv_grid", "kv_dim"), CASES, ids=["1d", "2d", "same-grid"])
def test_cross_attention_equals_the_math(q_grid, kv_grid, kv_dim, backend):
    layer = _randomise(Attention(DIM, HEADS, Global(), kv_dim=kv_dim, cross=True, backend=backend, dims=len(q_grid)))
    x = torch.randn(2, *q_grid, DIM, requires_grad=True)
    context = torch.randn(2, *kv_grid, kv_dim, requires_grad=True)
    mask = torch.rand(2, *kv_grid, generator=torch.Generator().manual_seed(3)) < 0.4
    mask.view(2, -1)[:, 0] = False  # every query keeps a key
    assert mask.any() and not mask.all()
    out = layer(x, context, key_padding_mask=mask)
    ref = _math(layer, x, context, mask)
    assert out.shape == (2, *q_grid, DIM)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    grads = torch.autograd.grad((out * w).sum(), [x, context, *layer.parameters()])
    ref_grads = torch.autograd.grad((ref * w).sum(), [x, context, *layer.parameters()])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    masked = context.grad if context.grad is not None else grads[1]
    assert masked.reshape(2, -1, kv_dim)[mask.reshape(2, -1)].abs().max() == 0  # padded keys get no gradient


def test_cross_attention_on_equal_grids_keeps_queries_at_padded_key_positions():
    """A query whose position coincides with a padded key is not padding itself (the operator zeroes such queries
    in self-attention): with equal grids the rows at masked context positions must still be the math."""
    layer = _randomise(Attention(DIM, HEADS, Global(), cross=True, dims=1))
    x, context = torch.randn(1, 6, DIM), torch.randn(1, 6, DIM)
    mask = torch.tensor([[False, False, True, True, False, True]])
    torch.testing.assert_close(layer(x, context, key_padding_mask=mask), _math(layer, x, context, mask),
                               rtol=1e-5, atol=1e-5)


def test_one_operator_call_with_global_and_different_grids():
    layer = Attention(DIM, HEADS, Global(), kv_dim=12, dims=1)
    calls = []

    def handler(call):
        calls.append(call)
        return BACKENDS["reference"].run(call)

    with intercept_attention(handler):
        layer(torch.randn(2, 5, DIM), torch.randn(2, 9, 12))
    assert len(calls) == 1 and calls[0].pattern == Global()
    assert (calls[0].q_grid, calls[0].kv_grid) == ((5,), (9,))


def _mha_pair(kv_dim: int, cross: bool):
    mha = _randomise(nn.MultiheadAttention(DIM, HEADS, batch_first=True, kdim=kv_dim, vdim=kv_dim)).eval()
    ours = Attention(DIM, HEADS, Global(), kv_dim=kv_dim if cross else None, cross=cross, dims=1)
    with torch.no_grad():
        if mha._qkv_same_embed_dim:
            wq, wk, wv = mha.in_proj_weight.split(DIM)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        if cross:
            ours.q.weight.copy_(wq)
            ours.kv.weight.copy_(torch.cat([wk, wv]))
            ours.q.bias.copy_(mha.in_proj_bias[:DIM])
            ours.kv.bias.copy_(mha.in_proj_bias[DIM:])
        else:
            ours.qkv.weight.copy_(torch.cat([wq, wk, wv]))
            ours.qkv.bias.copy_(mha.in_proj_bias)
        ours.proj.load_state_dict(mha.out_proj.state_dict())
    return mha, ours.eval()


@pytest.mark.parametrize("kv_dim", [DIM, 12])
def test_detr_decoder_cross_attention_equals_multihead_attention(kv_dim):
    """DETR decoder: queries = tgt + query_pos, keys = memory + pos, values = memory; key padding over memory."""
    mha, ours = _mha_pair(kv_dim, cross=True)
    tgt, query_pos = torch.randn(2, 6, DIM), torch.randn(2, 6, DIM)
    memory, pos = torch.randn(2, 20, kv_dim), torch.randn(2, 20, kv_dim)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, 13:] = True  # image 0's feature map is padded
    with torch.no_grad():
        ref, _ = mha(tgt + query_pos, memory + pos, memory, key_padding_mask=mask, need_weights=False)
        got = ours(tgt, memory, key_padding_mask=mask, query_pos=query_pos, key_pos=pos)
        plain_ref, _ = mha(tgt, memory, memory, key_padding_mask=mask, need_weights=False)
        plain = ours(tgt, memory, key_padding_mask=mask)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, plain_ref, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the positions matter


def test_detr_encoder_self_attention_with_positions_equals_multihead_attention():
    """DETR encoder: q = k = src + pos, v = src, with the fused qkv projection of a self-attention layer."""
    mha, ours = _mha_pair(DIM, cross=False)
    src, pos = torch.randn(2, 12, DIM), torch.randn(1, 12, DIM)  # pos broadcasts over the batch
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 8:] = True
    with torch.no_grad():
        ref, _ = mha(src + pos, src + pos, src, key_padding_mask=mask, need_weights=False)
        got = ours(src, key_padding_mask=mask, query_pos=pos, key_pos=pos)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    # self-attention zeroes padded queries' inputs (they carry no signal), so only content rows are compared
    torch.testing.assert_close(got[1, :8], ref[1, :8], rtol=1e-5, atol=1e-5)


def test_plain_self_attention_is_unchanged_by_the_cross_path():
    """The fused fast path and the per-projection path (context=x) compute the same thing."""
    layer = _randomise(Attention(DIM, HEADS, Global(), dims=2))
    x = torch.randn(2, 3, 5, DIM)
    torch.testing.assert_close(layer(x), layer(x, x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer(x), _math(layer, x, x), rtol=1e-5, atol=1e-5)


def test_cross_attention_errors_say_expected_and_got():
    layer = Attention(DIM, HEADS, Global(), kv_dim=12, dims=1)
    x = torch.randn(2, 5, DIM)
    with pytest.raises(ValueError, match=r"context must be \(B=2, \*kv_grid, 12\).*got \(2, 9, 16\)"):
        layer(x, torch.randn(2, 9, DIM))
    with pytest.raises(ValueError, match=r"as many grid dims as x \(2, 5, 16\).*got \(2, 3, 3, 12\)"):
        layer(x, torch.randn(2, 3, 3, 12))
    with pytest.raises(ValueError, match=r"kv_dim=12 ≠ dim=16 needs a context"):
        layer(x)
    with pytest.raises(TypeError, match=r"context must be a float tensor.*got torch.bool"):
        layer(x, torch.zeros(2, 9, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_pos must broadcast to \(2, 9, 12\), got \(2, 9, 16\)"):
        layer(x, torch.randn(2, 9, 12), key_pos=torch.randn(2, 9, DIM))
    with pytest.raises(ValueError, match=r"key_padding_mask must be bool \(2, 9\)"):
        layer(x, torch.randn(2, 9, 12), key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    same = Attention(DIM, HEADS, Global(), cross=True, dims=1)  # equal grids: the mask is still checked as given
    with pytest.raises(ValueError, match=r"key_padding_mask must be bool \(2, 5\).*got torch.bool \(2, 4\)"):
        same(x, torch.randn(2, 5, DIM), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"kv_dim must be ≥ 1"):
        Attention(DIM, HEADS, Global(), kv_dim=0)
    assert "kv_dim=12, cross=True" in repr(layer)
