"""The operator on a device other than the CPU, checked on the CPU (issue 20, items 2, 6 and 7).

The ``meta`` device stands in for a GPU: an elementwise op between a CPU tensor and a meta tensor raises, so a run
on meta proves every per-call tensor is created on the call's device; counting ``Tensor.to`` calls from CPU to meta
proves no per-call host→device copy is made once a plan exists. What only a GPU can show (sync-free kernels, fused
SDPA) is in ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import pytest
import torch

from visionattn.ops import (
    Axial,
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
    attention_probs,
    prepare_call,
    rope_frequencies,
)
from visionattn.ops.call import make_call

HEADS, HEAD_DIM = 2, 12
CASES = [(Global(), (5, 6)), (Window(3, 1), (7, 8)), (Neighborhood(3), (7, 6)), (Halo(4, 1, stride=2), (9, 10)),
         (Axial(1), (5, 6)), (Strided(3, 4), (10,)), (Neighborhood(3, dilation=2, border="pad"), (9,))]
KINDS = ["none", "rel_bias", "rel_logits", "rope"]


def _position(kind, pattern, grid, device):
    g = torch.Generator().manual_seed(1)
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        return RelativeBias(torch.randn(HEADS, *(2 * r + 1 for r in radius), generator=g).to(device))
    if kind == "rel_logits":
        return RelativeLogits(tuple(torch.randn(2 * r + 1, HEAD_DIM, generator=g).to(device) for r in radius))
    if kind == "rope":
        return Rope(rope_frequencies(HEAD_DIM, len(grid), device=device))
    return None


def _qkv(pattern, grid, device, grad=True):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, *pattern.query_grid(grid), HEADS, HEAD_DIM, generator=g).to(device)
    k, v = (torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g).to(device) for _ in range(2))
    return [t.requires_grad_(grad) for t in (q, k, v)]


def _backends(pattern):
    return ["reference", "blocked"] if pattern.separable else ["reference"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
@pytest.mark.parametrize("kind", KINDS)
def test_every_per_call_tensor_is_made_on_the_call_device(case, kind, monkeypatch):
    """On meta, forward and backward, ± key padding, reference and blocked: no CPU tensor meets a meta tensor, and
    after a first call (plans built) no CPU tensor is copied to the device."""
    pattern, grid = case
    position = _position(kind, pattern, grid, "meta")
    padding = torch.zeros(2, *grid, dtype=torch.bool, device="meta")
    real_to, copies = torch.Tensor.to, []

    def counting_to(self, *args, **kwargs):
        out = real_to(self, *args, **kwargs)
        if self.device.type == "cpu" and out.device.type == "meta":
            copies.append(tuple(self.shape))
        return out

    for backend in _backends(pattern):
        for pad in (None, padding):
            q, k, v = _qkv(pattern, grid, "meta")
            attention(q, k, v, pattern, position=position, backend=backend, key_padding_mask=pad).sum().backward()
            monkeypatch.setattr(torch.Tensor, "to", counting_to)
            out = attention(q, k, v, pattern, position=position, backend=backend, key_padding_mask=pad)
            out.sum().backward()
            monkeypatch.setattr(torch.Tensor, "to", real_to)
            assert out.device.type == "meta" and q.grad.device.type == "meta"
            assert copies == [], f"{backend}: per-call host→device copies of shapes {copies}"


def test_attention_probs_builds_on_the_call_device():
    pattern, grid = Halo(4, 1, stride=2), (9, 10)
    q, k, v = _qkv(pattern, grid, "meta", grad=False)
    call = prepare_call(q, k, v, pattern, position=_position("rel_logits", pattern, grid, "meta"))
    assert attention_probs(call, [0, 3]).shape == (2, HEADS, 2, 90)
    assert attention_probs(call).device.type == "meta"


# -- position tensors must be on the device of q, k, v -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rel_bias", "rel_logits", "rope"])
def test_position_on_another_device_is_a_clear_error(kind):
    """As in the README quick start with CUDA inputs: a CPU table with device inputs fails at the call, naming
    expected and got devices (here meta plays the GPU)."""
    pattern, grid = Neighborhood(3), (6, 6)
    q, k, v = _qkv(pattern, grid, "meta", grad=False)
    position = _position(kind, pattern, grid, "cpu")
    with pytest.raises(ValueError, match=r"expected meta, got cpu"):
        attention(q, k, v, pattern, position=position)
    attention(q, k, v, pattern, position=_position(kind, pattern, grid, "meta"))  # same device: fine


def test_position_that_is_not_a_tensor_is_a_type_error():
    q, k, v = _qkv(Global(), (4,), "cpu", grad=False)
    with pytest.raises(TypeError, match="must hold tensors"):
        make_call(q, k, v, Global(), RelativeBias([[0.0] * 7] * HEADS), "softmax", None, None)


# -- Graph: adjacency on the device, edges checked once -------------------------------------------------------------
def test_graph_adjacency_is_built_on_the_requested_device_once():
    edges = torch.tensor([[0, 1], [2, 0], [3, 3], [1, 2]])
    graph = Graph(edges)
    on_meta = graph.mask((4,), device="meta")
    assert on_meta.device.type == "meta" and on_meta.shape == (4, 4) and on_meta.dtype == torch.bool
    cpu = graph.mask((4,))
    assert cpu.device.type == "cpu" and graph.mask((4,)) is cpu  # cached per (n, device)
    assert cpu.tolist() == [[True, True, False, False], [False, True, True, False], [True, False, True, False],
                            [False, False, False, True]]
    dense = Graph(cpu.clone(), self_loops=False)
    assert dense.mask((4,), device="meta").device.type == "meta"


def test_graph_edges_are_read_back_once(monkeypatch):
    """The edge range check reads values back to the host (a sync on CUDA): once per token count, not per call."""
    real, seen = torch.aminmax, []
    monkeypatch.setattr(torch, "aminmax", lambda t: seen.append(1) or real(t))
    graph = Graph(torch.randint(0, 9, (20, 2), generator=torch.Generator().manual_seed(0)))
    q, k, v = _qkv(graph, (9,), "cpu", grad=False)
    for _ in range(3):
        attention(q, k, v, graph, backend="reference")
    assert len(seen) == 1
    with pytest.raises(ValueError, match=r"must index tokens in \[0, 4\), got range"):
        graph.check((4,), (4,))  # another token count: checked again, and the error says expected vs got


def test_graph_runs_on_meta_with_int_and_bool_edges():
    for edges in (torch.randint(0, 9, (20, 2), generator=torch.Generator().manual_seed(0)),
                  torch.rand(9, 9, generator=torch.Generator().manual_seed(1)) < 0.3):
        graph = Graph(edges)
        graph.check((9,), (9,))  # the one read-back, on the host copy the user gave
        object.__setattr__(graph, "edges", edges.to("meta"))
        q, k, v = _qkv(graph, (9,), "meta")
        attention(q, k, v, graph, backend="reference").sum().backward()
        assert graph.mask((9,), device="meta").device.type == "meta"


def test_rope_frequencies_and_module_descriptor_stay_on_their_device():
    from visionattn.layers.position import RotaryEmbedding

    assert rope_frequencies(12, 2, device="meta").device.type == "meta"
    module = RotaryEmbedding(12, 2).to("meta")
    assert module.descriptor().freqs.device.type == "meta"
    torch.testing.assert_close(RotaryEmbedding(12, 2).half().descriptor().freqs, rope_frequencies(12, 2))
