"""``torch.compile(fullgraph=True)`` through the operator: no graph break in ``visionattn/ops`` (issue 20 item 9,
issue 17's compile target).

A graph break in the operator is also a host sync on a GPU (``bool(t)``, ``int(t)``, ``t.item()``), so zero breaks
here means the attention path reads no value back. Measured on CPU before the fix: vit_tiny_test 7 breaks,
swin_test 56 (``_Plan`` built inside the graph; ``bool(...any())`` per layer). Dynamo only (``explain``) for the
presets; one preset also runs compiled (``aot_eager``, forward and backward) against eager.
"""

from __future__ import annotations

import pytest
import torch

from visionattn.models import create_model
from visionattn.ops import Graph, Halo, Neighborhood, RelativeBias, RelativeLogits, Strided, Window, attention


def _breaks_in_ops(explanation) -> list[str]:
    out = []
    for reason in explanation.break_reasons:
        frames = [f"{f.filename}:{f.lineno}" for f in reason.user_stack if "visionattn" in f.filename]
        out.append(f"{reason.reason.splitlines()[0]} at {frames[-1] if frames else '?'}")
    return out


# Every test preset traces whole (benchmarks/compile_presets.py explains every registered preset at full size);
# the slowest to trace (swin, halonet, axial: 25-35 s on a busy 2-core box) only with -m slow.
FAST_PRESETS = ["vit_tiny_test", "r26_vit_test", "botnet_test", "coatnet_test", "nonlocal_resnet_test",
                "sasa_resnet_test"]
SLOW_PRESETS = ["swin_test", "halonet_test", "axial_resnet_test", "exp_attn_resnet_test"]


@pytest.mark.parametrize("name", FAST_PRESETS + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW_PRESETS])
def test_presets_trace_without_graph_breaks(name):
    torch.manual_seed(0)
    model = create_model(name)
    size = model.preset.img_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))  # 2 images: BatchNorm in train
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, _breaks_in_ops(explanation)
    assert explanation.graph_count == 1


def _operator_cases():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(2, 5, 5, generator=g, requires_grad=True)
    logits = tuple(torch.randn(2 * r + 1, 8, generator=g, requires_grad=True) for r in (4, 4))
    return [
        pytest.param(Window(3, 1), RelativeBias(table), True, id="window_bias_padded"),  # learnable bias + padding
        pytest.param(Halo(4, 1), RelativeLogits(logits), False, id="halo_logits"),  # folded, padded logits
        pytest.param(Neighborhood(3), None, True, id="neighborhood_padded"),
        pytest.param(Strided(3, 4), None, False, id="strided_reference"),
        pytest.param(Graph(torch.randint(0, 48, (60, 2), generator=g)), None, False, id="graph_reference"),
    ]


@pytest.mark.parametrize("pattern, position, padded", _operator_cases())
def test_operator_paths_trace_without_graph_breaks(pattern, position, padded):
    """The backend paths presets do not take (key padding with a learnable bias, relative logits, the reference
    backend for non-separable patterns), after one eager call (Graph checks its edges once, on the host)."""
    g = torch.Generator().manual_seed(3)
    grid = (6, 8)
    q, k, v = (torch.randn(2, *grid, 2, 8, generator=g, requires_grad=True) for _ in range(3))
    padding = torch.zeros(2, *grid, dtype=torch.bool)
    padding[0, -2:] = True

    def run(q, k, v):
        return attention(q, k, v, pattern, position=position, key_padding_mask=padding if padded else None)

    run(q, k, v)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(run)(q, k, v)
    assert explanation.graph_break_count == 0, _breaks_in_ops(explanation)


def test_pattern_built_inside_the_graph_keeps_its_fields():
    """A pattern made inside a compiled function (Swin fits its windows per call) reaches the cached plan builders
    with its own fields: Dynamo used to hand them ``Window(7, 0)`` for ``Window(7, 3)``, so the compiled model ran
    unshifted windows (silently different outputs)."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 14, 14, 2, 8, generator=g)
    table = torch.randn(2, 13, 13, generator=g)

    def run(q, table, shift):
        return attention(q, q, q, Window(7, shift), position=RelativeBias(table), backend="blocked")

    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(run, backend="eager", fullgraph=True)(q, table, 3)
        torch.testing.assert_close(got, run(q, table, 3), rtol=1e-5, atol=1e-6)
        assert (got - run(q, table, 0)).abs().max() > 0.1


@pytest.mark.parametrize("name", ["vit_tiny_test", pytest.param("swin_test", marks=pytest.mark.slow)])
def test_compiled_preset_equals_eager_forward_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    size = model.preset.img_size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    want = model(x)
    want.sum().backward()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    for got, expected in zip(grads, [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_flex_inside_an_outer_compile_has_no_graph_break():
    """Strided and Graph go to flex on CUDA; a compiled model that uses them traces flex inline (the block mask built
    in the graph): ``fullgraph=True`` with key padding and a relative bias, forward on CPU, equal to the reference."""
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, 12, 2, 16, generator=g)
    padding = torch.zeros(2, 12, dtype=torch.bool)
    padding[0, -3:] = True
    pattern, position = Window(3, 1), RelativeBias(torch.randn(2, 5, generator=g))

    def run(q, backend="flex"):
        return attention(q, q, q, pattern, position=position, backend=backend, key_padding_mask=padding)

    torch._dynamo.reset()
    with torch.no_grad():
        got = torch.compile(run, backend="eager", fullgraph=True)(q)
        want = run(q, "reference")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_compile_presets_script_reports_breaks_and_exit_status(capsys, monkeypatch):
    """``benchmarks/compile_presets.py`` (every registered preset at full size, on meta): a preset that traces whole
    exits 0; an operator that breaks the graph is reported with its visionattn frame and exits 1."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "compile_presets.py"
    spec = importlib.util.spec_from_file_location("compile_presets", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--only", "vit_tiny_test"]) == 0
    assert "1 of 1 presets trace as one graph without breaks" in capsys.readouterr().out

    import visionattn.layers.attention as layer

    real = layer.attention

    def breaking(*args, **kwargs):
        torch._dynamo.graph_break()
        return real(*args, **kwargs)

    monkeypatch.setattr(layer, "attention", breaking)
    assert script.main(["--only", "vit_tiny_test"]) == 1
    out = capsys.readouterr().out
    assert "0 of 1 presets" in out and "layers/attention.py:" in out  # the break is named with its frame
