"""The causal 1-D pattern (CLIP's text tower): its dense mask is the lower triangle; the blocked backend equals the
reference forward and backward (every position kind, fp32 and bf16, an odd length), FlexAttention's forward equals
it, both equal PyTorch's own ``is_causal`` SDPA; NaN padding after the sequence never leaks; the linear backend and
grids of more than one dim are refused with the reason."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_backends import HEAD_DIM, HEADS, POSITIONS, _compare, _run

from visionattn.ops import BackendUnavailable, Causal, attention, choose_backend
from visionattn.ops.call import make_call


def test_mask_is_the_lower_triangle_and_every_query_sees_itself():
    mask = Causal().mask((5,))
    expected = torch.tensor([[j <= i for j in range(5)] for i in range(5)])
    assert torch.equal(mask, expected)
    assert Causal().max_offset((7,)) == (6,)
    rows = Causal().mask_rows((6,), (6,), torch.tensor([0, 3, 5]))
    assert torch.equal(rows, Causal().mask((6,))[[0, 3, 5]])


@pytest.mark.parametrize("kind", POSITIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_blocked_matches_reference(kind, dtype):
    want = _run(Causal(), (13,), kind, "reference", dtype, grad=True)
    got = _run(Causal(), (13,), kind, "blocked", dtype, grad=True)
    _compare(got, want, dtype)


@pytest.mark.parametrize("kind", POSITIONS)
def test_flex_forward_matches_reference(kind):
    want = _run(Causal(), (13,), kind, "reference", torch.float32, grad=False)
    got = _run(Causal(), (13,), kind, "flex", torch.float32, grad=False)
    _compare(got, want, torch.float32)


def test_equals_pytorch_causal_sdpa():
    """An independent twin: ``scaled_dot_product_attention(is_causal=True)``, outputs and input gradients."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 11, HEADS, HEAD_DIM, generator=g, requires_grad=True) for _ in range(3))
    cot = torch.randn(2, 11, HEADS, HEAD_DIM, generator=g)
    ours = attention(q, k, v, Causal())
    ours_grads = torch.autograd.grad((ours * cot).sum(), (q, k, v))
    theirs = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                            is_causal=True).transpose(1, 2)
    theirs_grads = torch.autograd.grad((theirs * cot).sum(), (q, k, v))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert choose_backend(make_call(q, k, v, Causal(), None, "softmax", None, None)).name == "blocked"


@pytest.mark.parametrize("backend", ["reference", "blocked"])
def test_nan_after_the_sequence_never_leaks(backend):
    """Sequences padded at the end (as a text batch is) give identical outputs and gradients at their own positions:
    NaN padding with a key padding mask, and junk padding without one (causality alone keeps it out; NaN would
    still reach the gradients through the masked products, 0 · NaN)."""
    lengths = torch.tensor([9, 5])
    padding = torch.arange(9)[None] >= lengths[:, None]  # (2, 9)
    results = []
    for fill, mask in ((float("nan"), padding), (7.0, padding), (1e3, None)):
        q, k, v = (torch.randn(2, 9, HEADS, HEAD_DIM, generator=torch.Generator().manual_seed(s)) for s in range(3))
        q, k, v = (torch.where(padding[..., None, None], fill, t).requires_grad_() for t in (q, k, v))
        # self-attention through separate q, k tensors: say which queries are padding (the operator only infers it
        # when q is k)
        out = attention(q, k, v, Causal(), backend=backend, key_padding_mask=mask, query_padding_mask=mask)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
        (out.masked_fill(padding[..., None, None], 0) * cot).sum().backward()
        valid = ~padding
        results.append([out[valid], q.grad[valid], k.grad[valid], v.grad[valid]])
    for run in results[1:]:
        for a, b in zip(results[0], run, strict=True):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_refusals_name_the_reason():
    q = torch.randn(1, 6, 2, 8)
    call = make_call(q, q, q, Causal(), None, "linear", None, None)
    with pytest.raises(BackendUnavailable, match=r"linear: runs the Global pattern only, got Causal\(\)"):
        choose_backend(call, "linear")
    assert choose_backend(call).name == "reference"  # the causal linear form runs on the reference
    grid2d = torch.randn(1, 3, 4, 2, 8)
    with pytest.raises(ValueError, match=r"Causal\(\) works on grids with \(1,\) dims; got a 2-dim grid \(3, 4\)"):
        attention(grid2d, grid2d, grid2d, Causal())
