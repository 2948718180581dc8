"""Pattern masks against the published definitions, on tiny grids checked by hand.

``Pattern.mask`` is the spec every backend must reproduce, so these tests never re-derive the expected
key sets with the library's own formulas: they are literal sets written out by hand (NATTEN, SASA,
HaloNet, Axial-DeepLab, Sparse Transformer), or, for Swin's shifted windows, the output of an independent
re-implementation of Swin's roll / partition / region-id procedure.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from visionattn.ops import Axial, Global, Graph, Halo, Neighborhood, Strided, Window

# -- helpers ----------------------------------------------------------------------------------------


def _raster(coord: tuple[int, ...], grid: tuple[int, ...]) -> int:
    index = 0
    for c, n in zip(coord, grid, strict=True):
        assert 0 <= c < n
        index = index * n + c
    return index


def _unraster(index: int, grid: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n in reversed(grid):
        out.append(index % n)
        index //= n
    return tuple(reversed(out))


def keys(pattern, kv_grid, query, q_grid=None):
    """Keys seen by one query: a set of ints on 1D grids, of coordinate tuples otherwise."""
    q_grid = tuple(kv_grid) if q_grid is None else tuple(q_grid)
    mask = pattern.mask(tuple(kv_grid), q_grid)
    assert mask.dtype == torch.bool
    assert tuple(mask.shape) == (math.prod(q_grid), math.prod(kv_grid))
    q = (query,) if isinstance(query, int) else tuple(query)
    row = mask[_raster(q, q_grid)]
    found = {_unraster(int(j), tuple(kv_grid)) for j in row.nonzero().flatten()}
    return {j[0] for j in found} if len(kv_grid) == 1 else found


def rows_1d(pattern, n, q_len=None):
    """Every query's key set on a 1D grid of ``n``: a list indexed by query."""
    q_len = n if q_len is None else q_len
    return [keys(pattern, (n,), i, (q_len,)) for i in range(q_len)]


def box(rows, cols):
    return {(r, c) for r in rows for c in cols}


# -- Neighborhood (NATTEN shift, SASA pad) ----------------------------------------------------------


NAT_5x5 = {
    # query: keys, written out from NATTEN's definition (window shifted inward at the borders)
    (0, 0): {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)},
    (0, 4): {(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4)},
    (4, 0): {(2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)},
    (4, 4): {(2, 2), (2, 3), (2, 4), (3, 2), (3, 3), (3, 4), (4, 2), (4, 3), (4, 4)},
    (0, 2): {(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)},  # top edge midpoint
    (2, 4): {(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4), (3, 2), (3, 3), (3, 4)},  # right edge midpoint
    (1, 1): {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)},  # next to corner: same box
    (2, 2): {(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)},  # centre
    (3, 1): {(2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2)},
}


@pytest.mark.parametrize("query", list(NAT_5x5))
def test_neighborhood_shift_5x5_natten(query):
    assert keys(Neighborhood(3, border="shift"), (5, 5), query) == NAT_5x5[query]


def test_neighborhood_shift_every_query_sees_kernel_squared():
    mask = Neighborhood(3, border="shift").mask((5, 5))
    assert mask.sum(1).tolist() == [9] * 25


SASA_5x5 = {
    (0, 0): {(0, 0), (0, 1), (1, 0), (1, 1)},
    (0, 4): {(0, 3), (0, 4), (1, 3), (1, 4)},
    (4, 0): {(3, 0), (3, 1), (4, 0), (4, 1)},
    (4, 4): {(3, 3), (3, 4), (4, 3), (4, 4)},
    (0, 2): {(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)},
    (2, 2): {(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)},
}


@pytest.mark.parametrize("query", list(SASA_5x5))
def test_neighborhood_pad_5x5_sasa(query):
    assert keys(Neighborhood(3, border="pad"), (5, 5), query) == SASA_5x5[query]


def test_neighborhood_pad_key_counts_5x5():
    counts = Neighborhood(3, border="pad").mask((5, 5)).sum(1).reshape(5, 5).tolist()
    assert counts == [
        [4, 6, 6, 6, 4],
        [6, 9, 9, 9, 6],
        [6, 9, 9, 9, 6],
        [6, 9, 9, 9, 6],
        [4, 6, 6, 6, 4],
    ]


def test_neighborhood_1d_shift_and_pad():
    assert rows_1d(Neighborhood(3, border="shift"), 5) == [{0, 1, 2}, {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {2, 3, 4}]
    assert rows_1d(Neighborhood(3, border="pad"), 5) == [{0, 1}, {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4}]
    assert rows_1d(Neighborhood(5, border="shift"), 6) == [
        {0, 1, 2, 3, 4},
        {0, 1, 2, 3, 4},
        {0, 1, 2, 3, 4},
        {1, 2, 3, 4, 5},
        {1, 2, 3, 4, 5},
        {1, 2, 3, 4, 5},
    ]


def test_neighborhood_pad_kernel_wider_than_grid_is_global_on_that_axis():
    assert rows_1d(Neighborhood(7, border="pad"), 3) == [{0, 1, 2}] * 3


def test_neighborhood_dilation_2_shift_natten():
    # NATTEN dilated NA, kernel 3, dilation 2, length 9: residue classes {0,2,4,6,8} and {1,3,5,7}; inside
    # its class each query sees 3 keys, the window shifted inward at the class's ends.
    assert rows_1d(Neighborhood(3, dilation=2, border="shift"), 9) == [
        {0, 2, 4},  # 0
        {1, 3, 5},  # 1
        {0, 2, 4},  # 2
        {1, 3, 5},  # 3
        {2, 4, 6},  # 4
        {3, 5, 7},  # 5
        {4, 6, 8},  # 6
        {3, 5, 7},  # 7: class {1,3,5,7} has only 4 members, window shifted to 3,5,7
        {4, 6, 8},  # 8
    ]


def test_neighborhood_dilation_2_pad():
    assert rows_1d(Neighborhood(3, dilation=2, border="pad"), 9) == [
        {0, 2},
        {1, 3},
        {0, 2, 4},
        {1, 3, 5},
        {2, 4, 6},
        {3, 5, 7},
        {4, 6, 8},
        {5, 7},
        {6, 8},
    ]


def test_neighborhood_dilation_3_shift_length_10():
    # classes {0,3,6,9}, {1,4,7}, {2,5,8}; kernel 3
    assert rows_1d(Neighborhood(3, dilation=3, border="shift"), 10) == [
        {0, 3, 6},
        {1, 4, 7},
        {2, 5, 8},
        {0, 3, 6},
        {1, 4, 7},
        {2, 5, 8},
        {3, 6, 9},
        {1, 4, 7},
        {2, 5, 8},
        {3, 6, 9},
    ]


def test_neighborhood_per_axis_kernel():
    # kernel 3 along rows, 1 along columns: a vertical strip of 3
    pattern = Neighborhood((3, 1), border="shift")
    assert keys(pattern, (4, 3), (0, 1)) == {(0, 1), (1, 1), (2, 1)}
    assert keys(pattern, (4, 3), (3, 2)) == {(1, 2), (2, 2), (3, 2)}
    assert keys(pattern, (4, 3), (2, 0)) == {(1, 0), (2, 0), (3, 0)}


def test_neighborhood_3d_pad():
    pattern = Neighborhood(3, border="pad")
    centre = keys(pattern, (3, 3, 3), (1, 1, 1))
    assert len(centre) == 27
    corner = keys(pattern, (3, 3, 3), (0, 0, 0))
    assert corner == {(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)}
    assert keys(pattern, (3, 3, 3), (2, 2, 2)) == {
        (1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2), (2, 1, 1), (2, 1, 2), (2, 2, 1), (2, 2, 2),
    }  # fmt: skip
    assert len(keys(pattern, (3, 3, 3), (0, 1, 1))) == 18  # face centre: 2 * 3 * 3


def test_neighborhood_3d_shift_kernel_equal_to_grid_is_global():
    assert bool(Neighborhood(3, border="shift").mask((3, 3, 3)).all())


# -- Halo (HaloNet) ---------------------------------------------------------------------------------


def test_halo_1d():
    # blocks [0,2) [2,4) [4,6), each sees its block plus 1 on each side, clipped to the grid
    assert rows_1d(Halo(block=2, halo=1), 6) == [
        {0, 1, 2},
        {0, 1, 2},
        {1, 2, 3, 4},
        {1, 2, 3, 4},
        {3, 4, 5},
        {3, 4, 5},
    ]


def test_halo_1d_partial_last_block():
    # length 5, block 2: last block [4,6) holds only query 4 and sees {3, 4}
    assert rows_1d(Halo(block=2, halo=1), 5) == [{0, 1, 2}, {0, 1, 2}, {1, 2, 3, 4}, {1, 2, 3, 4}, {3, 4}]


def test_halo_4x4():
    pattern = Halo(block=2, halo=1)
    assert keys(pattern, (4, 4), (0, 0)) == box({0, 1, 2}, {0, 1, 2})
    assert keys(pattern, (4, 4), (1, 1)) == box({0, 1, 2}, {0, 1, 2})
    assert keys(pattern, (4, 4), (3, 1)) == box({1, 2, 3}, {0, 1, 2})
    assert keys(pattern, (4, 4), (2, 3)) == box({1, 2, 3}, {1, 2, 3})
    assert keys(pattern, (4, 4), (0, 3)) == {(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)}


def test_halo_stride_query_grid_and_positions():
    pattern = Halo(block=2, halo=1, stride=2)
    assert pattern.query_grid((6,)) == (3,)
    assert pattern.query_grid((7,)) == (4,)
    assert pattern.query_grid((8, 6)) == (4, 3)
    assert pattern.query_coords(0, 3).tolist() == [0, 2, 4]
    assert tuple(pattern.mask((6,)).shape) == (3, 6)
    # query p sits at key position 2p: 0 -> block [0,2), 2 -> block [2,4), 4 -> block [4,6)
    assert rows_1d(pattern, 6, 3) == [{0, 1, 2}, {1, 2, 3, 4}, {3, 4, 5}]
    # length 7: query 3 sits at 6, block [6,8) sees [5,9) clipped to {5, 6}
    assert rows_1d(pattern, 7, 4) == [{0, 1, 2}, {1, 2, 3, 4}, {3, 4, 5, 6}, {5, 6}]


def test_halo_stride_two_queries_per_block():
    pattern = Halo(block=4, halo=1, stride=2)
    # queries sit at 0, 2 (block [0,4) -> keys [-1,5)) and 4, 6 (block [4,8) -> keys [3,9))
    assert rows_1d(pattern, 8, 4) == [{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}, {3, 4, 5, 6, 7}, {3, 4, 5, 6, 7}]


def test_halo_stride_2d():
    pattern = Halo(block=2, halo=1, stride=2)
    # query (1, 2) sits at (2, 4) on the 6x6 key grid: blocks rows [2,4), cols [4,6)
    assert keys(pattern, (6, 6), (1, 2), (3, 3)) == box({1, 2, 3, 4}, {3, 4, 5})
    assert tuple(pattern.mask((6, 6)).shape) == (9, 36)


# -- Window (Swin) ----------------------------------------------------------------------------------


def test_window_1d():
    assert rows_1d(Window(2), 6) == [{0, 1}, {0, 1}, {2, 3}, {2, 3}, {4, 5}, {4, 5}]
    # shift 1, size 3 on 7: windows {0} {1,2,3} {4,5,6} (Swin: the wrapped piece {0} is never joined)
    assert rows_1d(Window(3, shift=1), 7) == [{0}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {4, 5, 6}, {4, 5, 6}, {4, 5, 6}]
    # size 3 on 7 without shift: last window padded, padding masked
    assert rows_1d(Window(3), 7) == [{0, 1, 2}] * 3 + [{3, 4, 5}] * 3 + [{6}]


def test_window_4x4():
    assert keys(Window(2), (4, 4), (1, 2)) == {(0, 2), (0, 3), (1, 2), (1, 3)}
    assert keys(Window(2), (4, 4), (3, 0)) == {(2, 0), (2, 1), (3, 0), (3, 1)}
    shifted = Window(2, shift=1)
    # windows per axis: {0} {1,2} {3}
    assert keys(shifted, (4, 4), (0, 0)) == {(0, 0)}
    assert keys(shifted, (4, 4), (1, 2)) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert keys(shifted, (4, 4), (3, 1)) == {(3, 1), (3, 2)}
    assert keys(shifted, (4, 4), (0, 3)) == {(0, 3)}


def _swin_partition(x: torch.Tensor, ws: tuple[int, ...]) -> torch.Tensor:
    """Swin's window_partition, n-D and without channels: grid -> (n_windows, prod(ws))."""
    dims = x.ndim
    split = [s for n, w in zip(x.shape, ws, strict=True) for s in (n // w, w)]
    x = x.reshape(split)
    x = x.permute(*range(0, 2 * dims, 2), *range(1, 2 * dims, 2))
    return x.reshape(-1, math.prod(ws))


def swin_mask(grid: tuple[int, ...], ws, shift) -> torch.Tensor:
    """Independent implementation of Swin's (Video Swin's for 3D) shifted-window attention mask.

    Roll the grid by -shift, partition into windows, give every rolled position the region id from the
    slices (0, -ws), (-ws, -shift), (-shift, None) as in the Swin code, allow pairs in one window with equal
    region ids, then map rolled positions back to the original tokens (un-roll)."""
    dims = len(grid)
    ws = (ws,) * dims if isinstance(ws, int) else tuple(ws)
    shift = (shift,) * dims if isinstance(shift, int) else tuple(shift)
    assert all(n % w == 0 for n, w in zip(grid, ws, strict=True)), "Swin needs the window to divide the grid"
    tokens = torch.arange(math.prod(grid)).reshape(grid)
    rolled = torch.roll(tokens, shifts=tuple(-s for s in shift), dims=tuple(range(dims)))  # token at rolled pos
    img_mask = torch.zeros(grid, dtype=torch.long)
    per_axis = [
        [slice(None)] if s == 0 else [slice(0, -w), slice(-w, -s), slice(-s, None)]
        for w, s in zip(ws, shift, strict=True)
    ]
    for cnt, slices in enumerate(itertools.product(*per_axis)):
        img_mask[slices] = cnt
    token_windows = _swin_partition(rolled, ws)  # (nW, ws^D) original token ids
    region_windows = _swin_partition(img_mask, ws)  # (nW, ws^D) region ids
    n = math.prod(grid)
    out = torch.zeros(n, n, dtype=torch.bool)
    for tok, reg in zip(token_windows, region_windows, strict=True):
        same_region = (reg[:, None] - reg[None, :]) == 0  # Swin: attn_mask != 0 -> -100
        out[tok[:, None], tok[None, :]] = same_region
    return out


def test_swin_reference_sanity():
    # the independent implementation itself, checked by hand on 1D 6, window 3, shift 1: {0} {1,2,3} {4,5}
    got = swin_mask((6,), 3, 1)
    expected = [{0}, {1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {4, 5}, {4, 5}]
    assert [set(row.nonzero().flatten().tolist()) for row in got] == expected


@pytest.mark.parametrize(
    "grid, size, shift",
    [
        ((6,), 3, 1),
        ((6,), 2, 1),
        ((8,), 4, 3),
        ((6, 6), 3, 1),
        ((6, 6), 3, 2),
        ((8, 8), 4, 2),
        ((8, 8), 4, 0),
        ((4, 8), (2, 4), (1, 2)),
        ((4, 6), (2, 3), (0, 1)),
        ((4, 4, 4), 2, 1),  # Video Swin
        ((4, 6, 6), (2, 3, 3), (1, 1, 2)),
    ],
)
def test_window_matches_swin_roll_and_mask(grid, size, shift):
    pattern = Window(size, shift=shift)
    assert torch.equal(pattern.mask(grid), swin_mask(grid, size, shift))


# -- Axial ------------------------------------------------------------------------------------------


def test_axial_3x4():
    assert keys(Axial(0), (3, 4), (1, 2)) == {(0, 2), (1, 2), (2, 2)}  # its column
    assert keys(Axial(1), (3, 4), (1, 2)) == {(1, 0), (1, 1), (1, 2), (1, 3)}  # its row
    assert keys(Axial(0), (3, 4), (2, 0)) == {(0, 0), (1, 0), (2, 0)}
    assert keys(Axial(1), (3, 4), (0, 3)) == {(0, 0), (0, 1), (0, 2), (0, 3)}


def test_axial_3d():
    assert keys(Axial(0), (2, 2, 3), (1, 0, 2)) == {(0, 0, 2), (1, 0, 2)}
    assert keys(Axial(2), (2, 2, 3), (1, 0, 2)) == {(1, 0, 0), (1, 0, 1), (1, 0, 2)}


# -- Strided (Sparse Transformer) -------------------------------------------------------------------


def test_strided_1d():
    pattern = Strided(local=2, stride=3)
    # |i - j| < 2 or (i - j) % 3 == 0, on 7 tokens
    assert keys(pattern, (7,), 0) == {0, 1, 3, 6}
    assert keys(pattern, (7,), 3) == {0, 2, 3, 4, 6}
    assert keys(pattern, (7,), 5) == {2, 4, 5, 6}
    assert keys(pattern, (7,), 6) == {0, 3, 5, 6}


def test_strided_1d_causal():
    pattern = Strided(local=2, stride=3, causal=True)
    assert keys(pattern, (7,), 0) == {0}
    assert keys(pattern, (7,), 1) == {0, 1}
    assert keys(pattern, (7,), 3) == {0, 2, 3}
    assert keys(pattern, (7,), 5) == {2, 4, 5}
    assert keys(pattern, (7,), 6) == {0, 3, 5, 6}


def test_strided_on_2d_grid_uses_raster_order():
    # (2, 3) grid, raster indices 0..5; local 1 (self only) and stride 3: the column
    pattern = Strided(local=1, stride=3)
    assert keys(pattern, (2, 3), (1, 1)) == {(0, 1), (1, 1)}
    assert keys(pattern, (2, 3), (0, 2)) == {(0, 2), (1, 2)}


# -- Graph ------------------------------------------------------------------------------------------


def test_graph_explicit_edges():
    edges = torch.tensor([[0, 1], [2, 0], [3, 3], [1, 2]])
    with_loops = Graph(edges).mask((4,))
    assert with_loops.tolist() == [
        [True, True, False, False],
        [False, True, True, False],
        [True, False, True, False],
        [False, False, False, True],
    ]
    without = Graph(edges, self_loops=False).mask((4,))
    assert without.tolist() == [
        [False, True, False, False],
        [False, False, True, False],
        [True, False, False, False],
        [False, False, False, True],
    ]


def test_graph_on_2d_grid_uses_raster_indices():
    # token 5 on a (2, 3) grid is (1, 2)
    pattern = Graph(torch.tensor([[0, 5]]), self_loops=False)
    assert keys(pattern, (2, 3), (0, 0)) == {(1, 2)}
    assert keys(pattern, (2, 3), (1, 2)) == set()


def test_graph_dense_adjacency():
    adj = torch.tensor([[False, True, False], [False, False, False], [True, True, False]])
    assert Graph(adj, self_loops=False).mask((3,)).tolist() == adj.tolist()
    assert Graph(adj).mask((3,)).tolist() == [[True, True, False], [False, True, False], [True, True, True]]
    assert adj.tolist() == [[False, True, False], [False, False, False], [True, True, False]]  # not mutated


def test_graph_empty_edges():
    assert Graph().mask((3,)).tolist() == torch.eye(3, dtype=torch.bool).tolist()
    assert not bool(Graph(self_loops=False).mask((3,)).any())


# -- Global -----------------------------------------------------------------------------------------


def test_global():
    mask = Global().mask((2, 3))
    assert mask.dtype == torch.bool
    assert tuple(mask.shape) == (6, 6)
    assert bool(mask.all())


def test_global_cross_attention_shape():
    mask = Global().mask((2, 3), (1, 2))
    assert tuple(mask.shape) == (2, 6)
    assert bool(mask.all())


# -- max_offset -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, grid, expected",
    [
        (Neighborhood(3, border="shift"), (5, 5), (2, 2)),  # corner (0,0) sees (2,2)
        (Neighborhood(3, border="pad"), (5, 5), (1, 1)),
        (Neighborhood(3, dilation=2, border="shift"), (9,), (4,)),  # 0 sees 4, 8 sees 4
        (Neighborhood(3, dilation=2, border="pad"), (9,), (2,)),
        (Neighborhood((3, 1), border="shift"), (4, 3), (2, 0)),
        (Window(7), (14, 14), (6, 6)),
        (Window(3, shift=1), (6,), (2,)),  # windows {0} {1,2,3} {4,5}
        (Window(4), (6,), (3,)),  # windows [0,4) [4,6)
        (Halo(block=2, halo=1), (6,), (2,)),  # 0 sees 2, 2 sees 4
        (Halo(block=2, halo=1, stride=2), (6,), (2,)),  # query at 0 sees 2; at 2 sees 4; at 4 sees 3
        (Halo(block=4, halo=1, stride=2), (8,), (4,)),  # query at 0 sees 4
        (Axial(1), (3, 4), (0, 3)),
        (Global(), (2, 3), (1, 2)),
        (Strided(local=2, stride=3), (7,), (6,)),
        (Strided(local=2, stride=3, causal=True), (7,), (6,)),
        (Graph(torch.tensor([[0, 3]]), self_loops=False), (2, 2), (1, 1)),
        (Graph(torch.tensor([[1, 2]]), self_loops=False), (2, 2), (1, 1)),
        (Graph(), (2, 2), (0, 0)),
    ],
    ids=repr,
)
def test_max_offset(pattern, grid, expected):
    assert pattern.max_offset(grid) == expected
