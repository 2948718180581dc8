"""Bad input gives a clear ValueError / TypeError that names what was expected and what was got."""

from __future__ import annotations

import re

import pytest
import torch

from visionattn.ops import (
    BACKENDS,
    Axial,
    BackendUnavailable,
    Global,
    Graph,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Rope,
    Strided,
    Window,
    attention,
    choose_backend,
    rope_frequencies,
)
from visionattn.ops.call import make_call

ALL_BACKENDS = ("reference", "blocked", "flex", "linear")


def x(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def qkv(grid=(4, 4), heads=2, dim=8, batch=1):
    t = x(batch, *grid, heads, dim)
    return t, t, t


def lit(text: str) -> str:
    """A literal piece of an error message as a regex."""
    return re.escape(text)


# -- tensor shapes and dtypes -----------------------------------------------------------------------


def test_wrong_rank_q():
    q = x(2, 4, 8)
    k = v = x(2, 4, 1, 8)
    with pytest.raises(ValueError, match=r"q must be .*rank 4, 5 or 6.*got rank 3 with shape \(2, 4, 8\)"):
        attention(q, k, v, Global())


def test_wrong_rank_too_many_grid_dims():
    t = x(1, 2, 2, 2, 2, 1, 8)  # a 4-dim grid
    with pytest.raises(ValueError, match=r"got rank 7"):
        attention(t, t, t, Global())


def test_ranks_differ():
    q = x(1, 4, 4, 2, 8)
    k = v = x(1, 16, 2, 8)
    with pytest.raises(ValueError, match=r"same rank; got 5, 4, 4"):
        attention(q, k, v, Global())


def test_not_a_tensor():
    _, k, v = qkv()
    with pytest.raises(TypeError, match=r"q must be a torch.Tensor, got list"):
        attention([[0.0]], k, v, Global())


def test_not_a_pattern():
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"pattern must be .*got 'window'"):
        attention(q, k, v, "window")


def test_head_dim_mismatch_names_both_sizes():
    q = x(1, 4, 4, 2, 8)
    k = v = x(1, 4, 4, 2, 16)
    with pytest.raises(ValueError, match=r"head_dim.*q has 8, k has 16"):
        attention(q, k, v, Global())


def test_heads_mismatch():
    q = x(1, 4, 4, 2, 8)
    k = v = x(1, 4, 4, 3, 8)
    with pytest.raises(ValueError, match=r"heads differ: q has 2, k has 3"):
        attention(q, k, v, Global())


def test_kv_grid_mismatch():
    q = k = x(1, 4, 4, 2, 8)
    v = x(1, 4, 5, 2, 8)
    with pytest.raises(ValueError, match=lit("got k (1, 4, 4, 2, 8) and v (1, 4, 5, 2, 8)")):
        attention(q, k, v, Global())


def test_batch_mismatch():
    q = x(2, 4, 4, 2, 8)
    k = v = x(3, 4, 4, 2, 8)
    with pytest.raises(ValueError, match=r"batch sizes differ: q 2, k 3, v 3"):
        attention(q, k, v, Global())


def test_query_grid_must_equal_key_grid_for_local_patterns():
    q = x(1, 4, 4, 2, 8)
    k = v = x(1, 8, 8, 2, 8)
    with pytest.raises(ValueError, match=lit("expects query grid (8, 8), got (4, 4)")):
        attention(q, k, v, Window(4))


def test_dtype_mismatch_names_both():
    q = x(1, 4, 4, 2, 8)
    k = v = x(1, 4, 4, 2, 8, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"float32.*bfloat16"):
        attention(q, k, v, Global())


def test_integer_inputs():
    t = torch.zeros(1, 4, 2, 8, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"floating point, got torch.int64"):
        attention(t, t, t, Global())


# -- pattern construction and pattern vs grid -------------------------------------------------------


def test_neighborhood_kernel_larger_than_grid_shift():
    q, k, v = qkv((5, 5))
    with pytest.raises(ValueError, match=r"kernel 7 .*grid axis 0 of length 5"):
        attention(q, k, v, Neighborhood(7, border="shift"))


def test_neighborhood_kernel_times_dilation_larger_than_grid():
    q, k, v = qkv((8, 5))
    with pytest.raises(ValueError, match=r"kernel 3 × dilation 2 = 6 .*grid axis 1 of length 5"):
        attention(q, k, v, Neighborhood(3, dilation=2, border="shift"))


def test_neighborhood_pad_allows_kernel_larger_than_grid():
    q, k, v = qkv((3, 3))
    out = attention(q, k, v, Neighborhood(7, border="pad"), backend="reference")
    assert out.shape == q.shape


@pytest.mark.parametrize("kernel", [4, 0, -3, (3, 2)])
def test_neighborhood_even_or_nonpositive_kernel(kernel):
    with pytest.raises(ValueError, match=rf"odd and positive, got {re.escape(str(kernel))}"):
        Neighborhood(kernel)


def test_neighborhood_bad_dilation_and_border():
    with pytest.raises(ValueError, match=r"dilation must be ≥ 1, got 0"):
        Neighborhood(3, dilation=0)
    with pytest.raises(ValueError, match=r"border must be one of .*'shift'.*'pad'.*got 'zero'"):
        Neighborhood(3, border="zero")


def test_per_axis_tuple_length_must_match_grid():
    q, k, v = qkv((8, 8))
    with pytest.raises(ValueError, match=r"kernel has 3 entries but the grid \(8, 8\) has 2 dims"):
        attention(q, k, v, Neighborhood((3, 3, 3)))
    with pytest.raises(ValueError, match=r"size has 1 entries but the grid \(8, 8\) has 2 dims"):
        attention(q, k, v, Window((4,)))


@pytest.mark.parametrize("shift", [(2,), (2, 2, 2)])
def test_window_shift_tuple_length_must_match_grid(shift):
    q, k, v = qkv((8, 8))
    with pytest.raises(ValueError, match=r"shift"):
        attention(q, k, v, Window(4, shift=shift), backend="reference")


def test_window_larger_than_grid():
    q, k, v = qkv((4, 6))
    with pytest.raises(ValueError, match=r"window 5 does not fit grid axis 0 of length 4"):
        attention(q, k, v, Window(5))


def test_window_shift_not_less_than_size():
    with pytest.raises(ValueError, match=r"shift=3 size=3"):
        Window(3, shift=3)
    with pytest.raises(ValueError, match=r"got shift=-1"):
        Window(3, shift=-1)
    q, k, v = qkv((4, 8))
    # per-axis: shift 2 passes construction (< max size 4) but is not < window 2 on axis 0
    with pytest.raises(ValueError, match=r"shift 2 on axis 0 must be < window size 2"):
        attention(q, k, v, Window((2, 4), shift=(2, 0)))


def test_window_size_nonpositive():
    with pytest.raises(ValueError, match=r"Window size must be ≥ 1, got 0"):
        Window(0)


def test_halo_block_not_multiple_of_stride():
    with pytest.raises(ValueError, match=r"block 3 must be a multiple of stride 2"):
        Halo(block=3, halo=1, stride=2)


def test_halo_bad_values():
    with pytest.raises(ValueError, match=r"halo ≥ 0"):
        Halo(block=4, halo=-1)


def test_strided_halo_wrong_query_grid():
    q = k = v = x(1, 8, 8, 2, 8)
    with pytest.raises(ValueError, match=lit("on key grid (8, 8) expects query grid (4, 4), got (8, 8)")):
        attention(q, k, v, Halo(block=4, halo=1, stride=2))


def test_axial_axis_out_of_range():
    q, k, v = qkv((4, 4))
    with pytest.raises(ValueError, match=r"axis 2 out of range for a 2-dim grid \(4, 4\)"):
        attention(q, k, v, Axial(2))


def test_strided_bad_values():
    with pytest.raises(ValueError, match=r"local ≥ 1 and stride ≥ 1"):
        Strided(local=0, stride=3)


def test_global_cross_attention_needs_same_grid_dims():
    pattern = Global()
    with pytest.raises(ValueError, match=lit("query grid (4,) and key grid (4, 4) must have the same dims")):
        pattern.check((4,), (4, 4))


# -- Graph ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edges, got", [([[0, 1], [2, 16]], "[0, 16]"), ([[-1, 0]], "[-1, 0]")])
def test_graph_edges_out_of_range(edges, got):
    q, k, v = qkv((4, 4))
    with pytest.raises(ValueError, match=lit(f"tokens in [0, 16), got range {got}")):
        attention(q, k, v, Graph(torch.tensor(edges)))


def test_graph_edges_bad_shape():
    q, k, v = qkv((4,))
    with pytest.raises(ValueError, match=lit("(E, 2) int64 pairs, got shape (3, 3)")):
        attention(q, k, v, Graph(torch.zeros(3, 3, dtype=torch.long)))


def test_graph_adjacency_wrong_size():
    q, k, v = qkv((4,))
    with pytest.raises(ValueError, match=lit("must be (4, 4) for 4 tokens, got (3, 3)")):
        attention(q, k, v, Graph(torch.zeros(3, 3, dtype=torch.bool)))


def test_graph_edges_float_dtype():
    q, k, v = qkv((4,))
    with pytest.raises((ValueError, TypeError), match=r"float"):
        attention(q, k, v, Graph(torch.tensor([[0.0, 1.0]])), backend="reference")


# -- positions --------------------------------------------------------------------------------------


def test_relative_bias_table_too_small_says_needed_radius():
    q, k, v = qkv((5, 5))
    table = torch.zeros(2, 3, 3)  # radius (1, 1); NATTEN shift on 5x5 needs (2, 2) at the corners
    with pytest.raises(ValueError, match=r"up to ±\(1, 1\) .*needs ±\(2, 2\).*radius ≥ \(2, 2\)"):
        attention(q, k, v, Neighborhood(3), position=RelativeBias(table))


def test_relative_bias_table_big_enough_with_pad():
    q, k, v = qkv((5, 5))
    out = attention(q, k, v, Neighborhood(3, border="pad"), position=RelativeBias(torch.zeros(2, 3, 3)))
    assert out.shape == q.shape


def test_relative_logits_table_too_small():
    q, k, v = qkv((8, 8))
    tables = (torch.zeros(7, 8), torch.zeros(5, 8))
    with pytest.raises(ValueError, match=r"RelativeLogits covers offsets up to ±\(3, 2\) .*needs ±\(3, 3\)"):
        attention(q, k, v, Window(4), position=RelativeLogits(tables))


def test_relative_logits_wrong_table_count_and_width():
    q, k, v = qkv((8, 8))
    with pytest.raises(ValueError, match=r"needs 2 tables \(one per axis\), got 1"):
        attention(q, k, v, Window(4), position=RelativeLogits((torch.zeros(7, 8),)))
    with pytest.raises(ValueError, match=lit("(2R+1, head_dim=8), got (7, 4)")):
        attention(q, k, v, Window(4), position=RelativeLogits((torch.zeros(7, 4), torch.zeros(7, 4))))


def test_relative_bias_wrong_heads():
    q, k, v = qkv((4, 4), heads=2)
    with pytest.raises(ValueError, match=lit("(heads=2, 2 offset axes), got (3, 7, 7)")):
        attention(q, k, v, Window(4), position=RelativeBias(torch.zeros(3, 7, 7)))


def test_relative_bias_wrong_number_of_offset_axes():
    q, k, v = qkv((4, 4), heads=2)
    with pytest.raises(ValueError, match=lit("(heads=2, 2 offset axes), got (2, 7)")):
        attention(q, k, v, Window(4), position=RelativeBias(torch.zeros(2, 7)))


@pytest.mark.parametrize("kind", ["bias", "logits"])
def test_relative_table_even_size_is_rejected(kind):
    q, k, v = qkv((5, 5), heads=2, dim=8)
    if kind == "bias":
        position = RelativeBias(torch.zeros(2, 6, 6))
    else:
        position = RelativeLogits((torch.zeros(6, 8), torch.zeros(6, 8)))
    with pytest.raises(ValueError, match=r"odd|2R ?\+ ?1"):
        attention(q, k, v, Neighborhood(3), position=position, backend="reference")


def test_rope_head_dim_not_divisible():
    q, k, v = qkv((4, 4), dim=6)
    with pytest.raises(ValueError, match=r"2-dim grid needs head_dim divisible by 4, got 6"):
        attention(q, k, v, Global(), position=Rope(torch.zeros(2, 1)))


def test_rope_freqs_wrong_shape():
    q, k, v = qkv((4, 4), dim=8)
    with pytest.raises(ValueError, match=lit("Rope freqs must be (2, 2) for head_dim 8, got (3, 2)")):
        attention(q, k, v, Global(), position=Rope(rope_frequencies(12, 3)))


def test_position_wrong_type():
    q, k, v = qkv((4, 4))
    with pytest.raises(TypeError, match=r"position must be None, .*got Tensor"):
        attention(q, k, v, Global(), position=torch.zeros(2, 7, 7))


# -- key padding mask -------------------------------------------------------------------------------


def test_key_padding_mask_wrong_shape():
    q, k, v = qkv((4, 4))
    with pytest.raises(ValueError, match=lit("must be bool (1, 4, 4) (True = padding), got torch.bool (1, 16)")):
        attention(q, k, v, Global(), key_padding_mask=torch.zeros(1, 16, dtype=torch.bool))


def test_key_padding_mask_wrong_dtype():
    q, k, v = qkv((4, 4))
    with pytest.raises(ValueError, match=lit("must be bool (1, 4, 4) (True = padding), got torch.float32 (1, 4, 4)")):
        attention(q, k, v, Global(), key_padding_mask=torch.zeros(1, 4, 4))


# -- form and backend -------------------------------------------------------------------------------


def test_unknown_form():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"form must be one of \('softmax', 'linear'\), got 'relu'"):
        attention(q, k, v, Global(), form="relu")


def test_unknown_backend():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of .*'blocked'.*got 'natten'") as info:
        attention(q, k, v, Global(), backend="natten")
    for name in ALL_BACKENDS:
        assert repr(name) in str(info.value)


def test_backend_registry_names():
    assert set(BACKENDS) == set(ALL_BACKENDS)


def _assert_lists_every_backend(message: str, refused: str, reason: str):
    lines = {}
    for line in message.splitlines()[1:]:
        name, _, why = line.strip().partition(": ")
        lines[name] = why
    assert set(lines) == set(ALL_BACKENDS), message
    assert all(why.strip() for why in lines.values()), message
    assert re.search(reason, lines[refused]), message


@pytest.mark.parametrize(
    "backend, pattern, form, reason",
    [
        ("linear", Window(2), "softmax", r"form='linear' only, got form='softmax'"),
        ("linear", Window(2), "linear", r"Global pattern only, got Window\(size=2"),
        ("linear", Neighborhood(3), "linear", r"Global pattern only, got Neighborhood"),
        ("blocked", Strided(local=2, stride=4), "softmax", r"Strided is not separable"),
        ("blocked", Graph(), "softmax", r"Graph is not separable"),
        ("blocked", Global(), "linear", r"form='softmax' only, got form='linear'"),
        ("flex", Global(), "linear", r"form='softmax' only, got form='linear'"),
    ],
)
def test_forced_backend_unavailable_lists_every_backend(backend, pattern, form, reason):
    q, k, v = qkv((4, 4))
    with pytest.raises(BackendUnavailable) as info:
        attention(q, k, v, pattern, form=form, backend=backend)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert repr(backend) in message.splitlines()[0]
    _assert_lists_every_backend(message, backend, reason)


def test_forced_backend_message_says_cannot():
    q, k, v = qkv((4, 4))
    with pytest.raises(BackendUnavailable, match=r"backend 'linear' (cannot|can't|can ?not) run"):
        attention(q, k, v, Window(2), backend="linear")


def test_auto_with_no_backend_lists_every_backend():
    q, k, v = qkv((4, 4))
    position = RelativeBias(torch.zeros(2, 3, 3))
    with pytest.raises(BackendUnavailable, match=r"^no backend can run") as info:
        attention(q, k, v, Window(2), form="linear", position=position)
    _assert_lists_every_backend(str(info.value), "reference", r"no logits")
    _assert_lists_every_backend(str(info.value), "linear", r"Global pattern only")


def test_flex_refuses_grad_on_cpu():
    q, k, v = qkv((4, 4))
    q = q.clone().requires_grad_()
    with pytest.raises(BackendUnavailable) as info:
        attention(q, k, v, Window(2), backend="flex")
    _assert_lists_every_backend(str(info.value), "flex", r"backward")


def test_flex_refuses_grad_of_position_table_on_cpu():
    q, k, v = qkv((4, 4))
    table = torch.zeros(2, 3, 3, requires_grad=True)
    with pytest.raises(BackendUnavailable, match=r"flex: .*backward"):
        attention(q, k, v, Window(2), position=RelativeBias(table), backend="flex")


def test_flex_accepts_cpu_call_without_grad():
    q, k, v = qkv((4, 4))
    q = q.clone().requires_grad_()
    call = make_call(q, k, v, Window(2), None, "softmax", None, None)
    with torch.no_grad():
        assert choose_backend(call, "flex").name == "flex"


def test_observe_attention_sees_every_call_and_changes_nothing():
    from visionattn.ops import Neighborhood, attention, observe_attention

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 6, 5, 2, 4, generator=g) for _ in range(3))
    plain = attention(q, k, v, Neighborhood(3))
    seen = []
    with observe_attention(lambda call, out: seen.append((call.pattern, call.kv_grid, out.clone()))):
        watched = attention(q, k, v, Neighborhood(3))
    assert torch.equal(plain, watched)
    assert len(seen) == 1 and seen[0][0] == Neighborhood(3) and seen[0][1] == (6, 5)
    assert torch.equal(seen[0][2], plain)
    attention(q, k, v, Neighborhood(3))  # outside the context: not observed
    assert len(seen) == 1
