"""Steps 1-4 of ``benchmarks/gpu_check.py`` (versions, backends vs reference, probes, sync debug); steps 5-6 are in
``gpu_check_run.py``. Each step takes the runner's ``Context`` (device, dry run, deadline, ``check()``) and returns
a JSON-able result. Sizes are tiny in the dry run (CPU), where CUDA-only probes are skipped with their reason.
"""

from __future__ import annotations

import contextlib
import functools
import math
import platform
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import torch

from visionattn.models import create_model
from visionattn.ops import (
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
    prepare_call,
    rope_frequencies,
)

TOL = {torch.float32: (2e-3, 2e-4), torch.bfloat16: (4e-2, 4e-2)}  # (rtol, atol) on values scaled to ≤ 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# -- step 1 ----------------------------------------------------------------------------------------------------------
def step_versions(ctx) -> dict:
    import visionattn

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "visionattn": getattr(visionattn, "__version__", None), "platform": platform.platform(),
           "cpu_count": __import__("os").cpu_count()}
    with contextlib.suppress(Exception):
        import triton

        out["triton"] = triton.__version__
    with contextlib.suppress(Exception):
        import timm

        out["timm"] = timm.__version__
    if ctx.cuda:
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "count": torch.cuda.device_count(), "memory_gib": round(props.total_memory / 2**30, 1),
                      "sms": props.multi_processor_count}
    ctx.check("torch imports and sees the device", (not ctx.cuda) or torch.cuda.device_count() > 0)
    return out


# -- step 2 ----------------------------------------------------------------------------------------------------------
def _cases(device):
    edges = torch.randint(0, 9, (27, 2), generator=torch.Generator().manual_seed(0)).to(device)
    return [
        (Global(), (11,)), (Neighborhood(5), (13,)), (Neighborhood(3, dilation=2, border="pad"), (11,)),
        (Halo(4, 2), (11,)), (Halo(4, 1, stride=2), (11,)), (Window(4, shift=2), (11,)), (Strided(3, 4), (10,)),
        (Graph(edges), (9,)), (Global(), (5, 7)), (Neighborhood(3), (7, 6)), (Neighborhood(5), (9, 11)),
        (Neighborhood((3, 5), dilation=(2, 1), border="pad"), (9, 8)), (Halo(4, 1), (9, 7)),
        (Halo(4, 2, stride=2), (9, 10)), (Window(3, shift=1), (7, 8)), (Window((2, 4), shift=(1, 3)), (5, 9)),
        (Axial(0), (5, 6)), (Axial(1), (5, 6)), (Strided(5, 5), (5, 5)), (Global(), (3, 4, 5)),
        (Neighborhood(3), (3, 5, 4)), (Window(2, shift=1), (3, 5, 4)), (Halo(2, 1), (5, 4, 3)), (Axial(2), (3, 4, 5)),
    ]


def _head_dim(grid, wanted=16):
    """16 (flex's minimum) on 1D/2D grids; 24 on 3D grids (RoPE needs a multiple of 2 · dims)."""
    return wanted if len(grid) < 3 else max(24, wanted)


def _position(kind, pattern, grid, head_dim, device):
    g = torch.Generator().manual_seed(1)
    if kind == "none":
        return None, []
    if kind == "rope":
        leaf = (rope_frequencies(head_dim, len(grid)) * (1 + torch.rand(len(grid), 1, generator=g))).to(device)
        return Rope(leaf.requires_grad_()), [leaf]
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        leaf = torch.randn(2, *(2 * r + 1 for r in radius), generator=g).to(device).requires_grad_()
        return RelativeBias(leaf), [leaf]
    leaves = [torch.randn(2 * r + 1, head_dim, generator=g).to(device).requires_grad_() for r in radius]
    return RelativeLogits(tuple(leaves)), leaves


def _run(pattern, grid, kind, backend, dtype, device, head_dim, grad=True, form="softmax", padding=None, batch=2,
         nan=False):
    """[output, grads of q, k, v and the position leaves] in float32 (output only without grad). ``nan``: the
    padded entities' inputs are NaN (they must not leak: padded inputs are zeroed before any backend runs)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, *pattern.query_grid(grid), 2, head_dim, generator=g)
    k, v = (torch.randn(batch, *grid, 2, head_dim, generator=g) for _ in range(2))
    if nan:
        fill = padding.cpu()[..., None, None]
        q, k, v = (torch.where(fill, float("nan"), t) for t in (q, k, v))
    inputs = [t.to(device=device, dtype=dtype).requires_grad_(grad) for t in (q, k, v)]
    position, leaves = _position(kind, pattern, grid, head_dim, device)
    with torch.set_grad_enabled(grad):
        self_attention = padding is not None and tuple(pattern.query_grid(grid)) == tuple(grid)
        out = attention(*inputs, pattern, position=position, backend=backend, form=form, key_padding_mask=padding,
                        query_padding_mask=padding if self_attention else None)
    if not grad:
        return [out.float()]
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(device)
    (out.float() * cot).sum().backward()
    return [out.float()] + [t.grad.float() for t in inputs + leaves]


def _error(got, want, dtype) -> float:
    """Largest |got - want| over every tensor, each scaled by its reference's largest value (bf16: by the call's)."""
    got, want = [g.detach() for g in got], [w.detach() for w in want]
    largest = max(float(w.abs().max()) for w in want)
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        scale = max(float(b.abs().max()) if dtype == torch.float32 else largest, 1.0)
        rtol, atol = TOL[dtype]
        excess = ((a - b).abs() / scale - rtol * (b.abs() / scale)).max()
        worst = max(worst, float(excess) / atol)
    return worst  # ≤ 1: within tolerance


def _compare(ctx, name, run, want, dtype, failures, errors):
    try:
        err = _error(run(), want, dtype)
        errors[name] = round(err, 3)
        if not err <= 1.0:
            failures.append(name)
    except Exception as e:  # noqa: BLE001
        errors[name] = f"{type(e).__name__}: {str(e)[:300]}"
        failures.append(name)


def step_backends(ctx) -> dict:
    device, result = ctx.device, {}
    cases = _cases(device)[1::6] if ctx.dry_run else _cases(device)
    kinds = ["none", "rel_bias", "rel_logits", "rope"]
    dtypes = ["fp32"] if ctx.dry_run else ["fp32", "bf16"]
    failures, errors, counted = {"blocked": [], "linear": [], "flex": []}, {}, Counter()
    ctx.partial["errors"] = errors  # kept if the step is cut short
    for dname in dtypes:  # blocked and linear: the whole matrix (no compile, seconds)
        dtype = DTYPES[dname]
        for pattern, grid in cases:
            hd = _head_dim(grid)
            for kind in kinds:
                want = _run(pattern, grid, kind, "reference", dtype, device, hd)
                if pattern.separable:
                    counted["blocked"] += 1
                    _compare(ctx, f"blocked {pattern} {grid} {kind} {dname}",
                             functools.partial(_run, pattern, grid, kind, "blocked", dtype, device, hd),
                             want, dtype, failures["blocked"], errors)
                if isinstance(pattern, Global) and kind in ("none", "rope"):
                    counted["linear"] += 1
                    lin_want = _run(pattern, grid, kind, "reference", dtype, device, hd, form="linear")
                    _compare(ctx, f"linear {pattern} {grid} {kind} {dname}",
                             functools.partial(_run, pattern, grid, kind, "linear", dtype, device, hd, form="linear"),
                             lin_want, dtype, failures["linear"], errors)
    # key padding (NaN in the padded inputs), learnable bias: blocked equals the reference, gradients included
    for pattern, grid in [(Window(3, shift=1), (7, 8)), (Neighborhood(3), (7, 6)), (Global(), (5, 7))]:
        padding = torch.zeros(2, *grid, dtype=torch.bool, device=device)
        padding[0, -2:] = True
        counted["blocked"] += 1
        want = _run(pattern, grid, "rel_bias", "reference", torch.float32, device, 16, padding=padding)
        _compare(ctx, f"blocked padded NaN {pattern} {grid}", functools.partial(
            _run, pattern, grid, "rel_bias", "blocked", torch.float32, device, 16, padding=padding, nan=True),
            want, torch.float32, failures["blocked"], errors)
    for name in ("blocked", "linear"):
        ctx.check(f"{name} equals the reference (fwd+bwd, {'/'.join(dtypes)})", not failures[name],
                  cases=counted[name], failed=failures[name][:20])
    result.update(_flex(ctx, failures["flex"], errors, counted))
    result["errors"] = errors  # per case: largest error / tolerance (≤ 1 passes), or the exception
    return result


def _flex(ctx, failures, errors, counted) -> dict:
    """Flex at head_dim 16 (fwd+bwd on CUDA, forward on CPU), most important cases first while time lasts; the
    refusal at head_dim 12; whether Inductor itself rejects 12."""
    device, grad, out = ctx.device, ctx.cuda, {}
    g16 = Graph(torch.randint(0, 48, (100, 2), generator=torch.Generator().manual_seed(0)).to(device))
    priority = [(Strided(3, 4), (10,), "none", "fp32"), (Strided(5, 5), (5, 5), "none", "bf16"),
                (g16, (6, 8), "none", "fp32"), (Window(3, shift=1), (7, 8), "rel_bias", "bf16"),
                (Neighborhood(5), (9, 11), "rel_logits", "bf16"), (Halo(4, 2, stride=2), (9, 10), "rel_bias", "fp32"),
                (Global(), (5, 7), "rope", "bf16"), (Axial(1), (5, 6), "rel_logits", "fp32"),
                (Neighborhood(3, dilation=2), (8, 7), "none", "fp32"), (Strided(3, 4, causal=True), (12,), "rel_bias",
                                                                          "bf16")]
    if ctx.dry_run:
        priority = priority[:2]
    skipped = []
    for pattern, grid, kind, dname in priority:
        name = f"flex {pattern} {grid} {kind} {dname}"
        if ctx.left() < 40:
            skipped.append(name)
            continue
        dtype = DTYPES[dname]
        want = _run(pattern, grid, kind, "reference", dtype, device, 16, grad=grad)
        counted["flex"] += 1
        _compare(ctx, name, functools.partial(_run, pattern, grid, kind, "flex", dtype, device, 16, grad=grad),
                 want, dtype, failures, errors)
    ctx.check(f"flex equals the reference at head_dim 16 ({'fwd+bwd' if grad else 'forward'})", not failures,
              cases=counted["flex"], failed=failures, skipped_for_time=skipped)
    q = torch.randn(1, 10, 2, 12, device=device)
    with torch.no_grad():
        call = prepare_call(q, q, q, Strided(3, 4))
        if ctx.cuda:
            try:
                choose_backend(call, "flex")
                refused = None
            except BackendUnavailable as e:
                refused = str(e).splitlines()[-1] if "flex" in str(e) else str(e)
            auto = choose_backend(call).name
            ctx.check("flex refuses head_dim 12 on CUDA and auto falls back", refused is not None and auto != "flex",
                      reason=refused, auto=auto)
            out["inductor_head_dim_12"] = _inductor_head_dim_12(ctx, q) if ctx.left() > 45 else "skipped: time"
        else:
            out["flex_head_dim_12"] = "skipped: CPU runs flex eagerly, no Inductor limit"
    return out


def _inductor_head_dim_12(ctx, q) -> str:
    """Whether compiled FlexAttention really rejects head_dim 12 (the premise of the refusal), informational."""
    from torch.nn.attention.flex_attention import flex_attention

    try:
        torch.compile(flex_attention)(*(t.transpose(1, 2).contiguous() for t in (q, q, q)))
        torch.cuda.synchronize()
        return "compiled and ran (the refusal could be relaxed for this torch)"
    except Exception as e:  # noqa: BLE001
        return f"rejected: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
    finally:
        torch._dynamo.reset()


# -- step 3 ----------------------------------------------------------------------------------------------------------
def step_probes(ctx) -> dict:
    if not ctx.cuda:
        reason = "skipped: CUDA-only (sync debug mode, fused SDPA kernels, a second device, CUDA's grid limit)"
        # what the CPU can exercise: the fused-only cases run unrestricted, and the chunked big-batch logic shrunk
        return {"item2_graph": reason, "item3_4_fused_only": _fused_cases(ctx, restricted=False),
                "item6_device_check": reason, "item8_big_batch": _big_batch(ctx, images=6, grid=14),
                "unchunked": reason}
    out = {"item2_graph": _graph_probe(ctx), "item3_4_fused_only": _fused_cases(ctx, restricted=True),
           "item6_device_check": _device_probe(ctx), "item8_big_batch": _big_batch(ctx, images=810, grid=56)}
    out["unchunked"] = _unchunked_child(ctx) if ctx.left() > 20 else "skipped: time"
    return out


def _graph_probe(ctx) -> dict:
    gen = torch.Generator().manual_seed(0)
    grid, out = (6, 8), {}
    q, k, v = (torch.randn(2, *grid, 2, 16, generator=gen).cuda() for _ in range(3))
    for label, edges in (("int64 edges", torch.randint(0, 48, (100, 2), generator=gen)),
                         ("bool adjacency", torch.rand(48, 48, generator=gen) < 0.2)):
        graph = Graph(edges.cuda())
        want = attention(*(t.cpu() for t in (q, k, v)), Graph(edges), backend="reference")
        with_flex = label == "int64 edges" and ctx.left() > 50  # a flex compile costs ~20-40 s
        with torch.no_grad():
            attention(q, k, v, graph, backend="reference")  # first call: edges checked once (one read-back)
            if with_flex:
                attention(q, k, v, graph, backend="flex")  # compiled here, outside the no-sync window
            torch.cuda.synchronize()
            try:
                torch.cuda.set_sync_debug_mode("error")
                got = attention(q, k, v, graph, backend="reference")
                flex_got = attention(q, k, v, graph, backend="flex") if with_flex else got
                error = None
            except Exception as e:  # noqa: BLE001
                got = flex_got = None
                error = f"{type(e).__name__}: {str(e)[:300]}"
            finally:
                torch.cuda.set_sync_debug_mode(0)
        close = got is not None and torch.allclose(got.cpu(), want, atol=1e-4) and torch.allclose(
            flex_got.cpu(), want, atol=1e-3)
        ctx.check(f"Graph with CUDA {label}: no sync on the second call, equal to CPU", error is None and close,
                  error=error)
        out[label] = error or ("ok" if close else "values differ")
    return out


def _fused_cases(ctx, restricted: bool) -> dict:
    """Blocked calls under SDPA restricted to fused kernels (no math fallback): relative logits (padded widths of
    SASA / HaloNet / Axial), a learnable bias (Swin), masks, key padding; fwd+bwd against the reference."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION]
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        kernels.append(SDPBackend.CUDNN_ATTENTION)
    small = ctx.dry_run
    cases = [("sasa_rel_logits", Neighborhood(7), (9, 9) if small else (14, 14), "rel_logits", 16),
             ("halonet_rel_logits", Halo(8, 3), (8, 8) if small else (16, 16), "rel_logits", 16),
             ("axial_rel_logits", Axial(1), (5, 9) if small else (9, 15), "rel_logits", 16),
             ("swin_rel_bias", Window(7, 3), (7, 7) if small else (14, 14), "rel_bias", 32),
             ("window_mask", Window(7, 3), (7, 7) if small else (14, 14), "none", 32),
             ("global", Global(), (7, 7), "none", 64),
             ("neighborhood_padded", Neighborhood(7), (9, 9) if small else (14, 14), "none", 32)]
    out, device = {}, ctx.device
    for dname in (["fp32"] if small else ["fp32", "bf16"]):
        dtype = DTYPES[dname]
        for label, pattern, grid, kind, hd in (cases[::2] if small else cases):
            padding = None
            if label.endswith("padded"):
                padding = torch.zeros(2, *grid, dtype=torch.bool, device=device)
                padding[1, -3:] = True
            name = f"{label} {dname}"
            want = _run(pattern, grid, kind, "reference", dtype, device, hd, padding=padding)
            blocked = functools.partial(_run, pattern, grid, kind, "blocked", dtype, device, hd, padding=padding)
            try:
                with sdpa_kernel(kernels) if restricted else contextlib.nullcontext():
                    got = blocked()
                err, error = _error(got, want, dtype), None
            except Exception as e:  # noqa: BLE001
                err, error = math.inf, f"{type(e).__name__}: {str(e)[:300]}"
            kernel_names = _kernels(blocked) if ctx.cuda and dname == "bf16" else None
            out[name] = {"error_over_tol": None if error else round(err, 3), "exception": error,
                         "kernels": kernel_names}
            ctx.check(f"fused-only SDPA: {name}", error is None and err <= 1.0, error=error)
    return out


def _kernels(fn) -> list[str]:
    """Names of the CUDA kernels ``fn`` launched that look like attention or softmax (math path) kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = {e.key for e in prof.key_averages()}
    keys = ("fmha", "attention", "flash", "cutlass", "softmax", "cudnn")
    return sorted(n[:90] for n in names if any(k in n.lower() for k in keys))[:8]


def _device_probe(ctx) -> dict:
    q = torch.randn(1, 6, 6, 2, 16, device="cuda")
    table = torch.zeros(2, 5, 5)  # on the CPU, as in the README quick start
    try:
        attention(q, q, q, Neighborhood(3), position=RelativeBias(table))
        message = None
    except ValueError as e:
        message = str(e)
    ok = message is not None and "expected cuda:0, got cpu" in message
    ctx.check("a CPU position table with CUDA inputs is a ValueError naming both devices", ok, message=message)
    return {"message": message}


def _big_batch(ctx, images: int, grid: int) -> dict:
    """Swin-T stage 1 (Window(7, 3), 56², 3 heads of 32, learnable bias): ``images`` · tiles SDPA batch entries,
    forward and backward, chunked below the grid limit; the first images equal a small batch."""
    from visionattn.ops.backends import sdpa as sdpa_module

    device, dtype = ctx.device, torch.bfloat16 if ctx.cuda else torch.float32
    limit, fused = sdpa_module.SDPA_MAX_BATCH, sdpa_module.FUSED_BIAS_GRAD_DEVICES
    if not ctx.cuda:  # shrink the limit so that the CPU run is chunked too, and keep the bias in SDPA as on CUDA
        sdpa_module.SDPA_MAX_BATCH, sdpa_module.FUSED_BIAS_GRAD_DEVICES = 7, ("cpu",)
    calls, real = [], sdpa_module.F.scaled_dot_product_attention

    def counting(q, *args, **kwargs):
        calls.append(int(q.shape[0]))
        return real(q, *args, **kwargs)

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(images, grid, grid, 3, 32, generator=gen).to(device, dtype)
    table = (torch.randn(3, 13, 13, generator=gen) * 0.1).to(device).requires_grad_()
    pattern = Window(7, 3)
    try:
        sdpa_module.F.scaled_dot_product_attention = counting
        q = x.requires_grad_()
        out = attention(q, q, q, pattern, position=RelativeBias(table))
        out.float().square().mean().backward()
        if ctx.cuda:
            torch.cuda.synchronize()
    finally:
        sdpa_module.F.scaled_dot_product_attention = real
        sdpa_module.SDPA_MAX_BATCH, sdpa_module.FUSED_BIAS_GRAD_DEVICES = limit, fused
    few = x[:4].detach().clone().requires_grad_()
    table_few = table.detach().clone().requires_grad_()
    ref = attention(few, few, few, pattern, position=RelativeBias(table_few))
    (ref.float().square().sum() / out.numel()).backward()
    def relative(a, b):
        a, b = a.detach().float(), b.detach().float()
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

    err_out, err_grad = relative(out[:4], ref), relative(q.grad[:4], few.grad)
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-5
    tiles = math.ceil((grid + 4) / 7) ** 2  # Window(7, shift=3): the grid padded by 4 before the first window
    ok = len(calls) > 1 and max(calls) <= (limit if ctx.cuda else 7) and err_out <= tol and err_grad <= tol
    ctx.check("big SDPA batch runs in chunks and equals a small batch", ok, entries=images * tiles, calls=calls[:8])
    return {"images": images, "tiles_per_image": tiles, "sdpa_batch": images * tiles, "sdpa_calls": len(calls),
            "max_err_out": err_out, "max_err_grad_q": err_grad}


def unchunked_probe() -> dict:
    """In a child process (a failed launch must not poison the checker): the big batch's SDPA without chunking."""
    from visionattn.ops.backends import sdpa as sdpa_module

    sdpa_module.SDPA_MAX_BATCH = 1 << 62
    x = torch.randn(810, 56, 56, 3, 32, device="cuda", dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            attention(x, x, x, Window(7, 3))
        torch.cuda.synchronize()
        return {"unchunked_65610": "ran (this kernel takes batches past 65,535)"}
    except Exception as e:  # noqa: BLE001
        return {"unchunked_65610": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"}


def _unchunked_child(ctx) -> dict | str:
    script = Path(__file__).with_name("gpu_check.py")
    try:
        done = subprocess.run([ctx.python, str(script), "--probe-unchunked"], capture_output=True, text=True,
                              timeout=max(5.0, min(90.0, ctx.left() - 5)))
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        return __import__("json").loads(lines[-1]) if lines else f"rc {done.returncode}: {done.stderr[-500:]}"
    except subprocess.TimeoutExpired:
        return "timed out"


# -- step 4 ----------------------------------------------------------------------------------------------------------
def _sync_models() -> list[tuple[str, callable]]:
    return [("swin_test", lambda: create_model("swin_test", num_classes=10)),
            ("sasa_resnet_test", lambda: create_model("sasa_resnet_test", num_classes=10)),
            ("rope: exp_attn_resnet_test position=rope",
             lambda: create_model("exp_attn_resnet_test", num_classes=10, position="rope"))]


def _innermost(stack, marker: str) -> str | None:
    for frame in reversed(stack):
        if marker in frame.filename:
            return f"{frame.filename.split(marker, 1)[1]}:{frame.lineno}"
    return None


def step_sync_debug(ctx) -> dict:
    import traceback

    out, device = {}, ctx.device
    for name, build in _sync_models():
        torch.manual_seed(0)
        model = build().to(device).train()
        size = model.preset.img_size
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = 2 if ctx.dry_run else 4
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        per_step = []
        for _step in (1, 2):
            seen: Counter = Counter()
            ops: Counter = Counter()

            def hook(message, category, filename, lineno, file=None, line=None, seen=seen, ops=ops):
                where = _innermost(traceback.extract_stack()[:-1], "visionattn/")
                seen[f"{filename}:{lineno}" + (f" (visionattn/{where})" if where else "")] += 1
                if where and where.startswith("ops/"):
                    ops[where] += 1

            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = hook
                if ctx.cuda:
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                finally:
                    if ctx.cuda:
                        torch.cuda.set_sync_debug_mode(0)
            per_step.append({"warnings": sum(seen.values()), "in_ops": sum(ops.values()),
                             "by_location": dict(seen.most_common(15)), "ops_locations": dict(ops)})
        out[name] = per_step
        if ctx.cuda:
            ctx.check(f"{name}: no sync in visionattn/ops at step 2", per_step[1]["in_ops"] == 0,
                      ops_locations=per_step[1]["ops_locations"])
    if not ctx.cuda:
        out["note"] = "skipped the sync debug mode (CUDA-only); the two training steps ran on CPU"
    return out

