"""Scaling sweep of the operator: measured time and peak memory vs token count, beside the analytic cost model.

For each pattern and square grid side ``S`` (``S²`` tokens, float32, ``(batch, S, S, heads, head_dim)``) two
fresh processes, forked from the sweep process (which has imported torch but runs no parallel torch work, so the
fork is safe and each case gets its own heap without paying the import again), each warm up with a
forward+backward and a forward (kernels, the blocked backend's cached plan), then: the first measures the **peak
RSS growth** of one forward+backward (the kernel's high-water mark ``VmHWM`` reset through
``/proc/self/clear_refs`` after ``malloc_trim``, as ``benchmarks/ops_memory.py`` does, with a fixed glibc mmap
threshold so that freed large blocks go back to the OS and RSS follows the live tensors, not heap fragmentation:
what the OS must provide, without instrumenting anything); the second times ``repeats`` forwards
(``torch.no_grad``) and forward+backwards with the default allocator and reports the medians.

Beside each measurement: the analytic forward FLOPs, saved-activation and peak-memory estimates of
:mod:`visionattn.analysis.cost` for the execution the backend takes, and the forward+backward time extrapolated
from the previous measured size by the FLOPs ratio. A pattern stops cleanly (one ``skipped: ...`` row per
remaining size) where the predicted memory exceeds the budget (``--max-memory``, else 75 % of ``MemAvailable``,
re-read before every case) or the extrapolated forward+backward time exceeds ``--max-seconds``; a child that dies
(e.g. killed by the OOM killer) or times out is reported in its row and stops that pattern, not the sweep.

Patterns (``name[@backend]``, backend ``auto`` by default): ``global`` (Global; on CPU the blocked backend's fused
flash kernel: time ∝ N², memory ∝ N), ``global@reference`` (the dense reference: memory ∝ N²), ``neighborhood``
(Neighborhood(7)), ``halo`` (Halo(8, 3)), ``window`` (Window(8)), ``axial`` (Axial(0): one pass along the height,
∝ N^1.5), ``strided`` (Strided(S, S): a row band and the column), ``linear`` (Global, linear form: ∝ N).

Video mode (``video_side=S``; ``visionattn bench sweep --video``): the sizes are numbers of frames T of a
``(T, S, S)`` tubelet grid, and each case is the attention calls of one layer of a video model
(:func:`video_calls`): ``st`` (ViViT model 1: Global over T·S² tokens, ∝ T²), ``fe`` (model 2: attention within
each frame, then Global over the T frame tokens: ∝ T, plus a T² term over T tokens only), ``fsa`` (model 3: within
the frame, then across time with Axial(0): T·S⁴ + T²·S², linear until T nears S²), ``fdp`` (model 4: the same two
patterns on half the heads each), ``window3d`` (Video Swin: Window((4, 7, 7)), ∝ T).
"""

from __future__ import annotations

import csv
import math
import resource
import statistics
import time
from dataclasses import asdict, dataclass

PATTERN_NAMES = ("global", "neighborhood", "halo", "window", "axial", "strided", "linear")
VIDEO_PATTERN_NAMES = ("st", "fe", "fsa", "fdp", "window3d")
DEFAULT_VIDEO_PATTERNS = "st,fe,fsa,fdp,window3d"
DEFAULT_FRAMES = "4..128"
VIDEO_WINDOW = (4, 7, 7)  # Video Swin's window is (8, 7, 7) on 16 frame-tubelets; 4 keeps it inside short clips
BACKENDS = ("auto", "reference", "blocked", "linear")
DEFAULT_PATTERNS = "global,global@reference,neighborhood,halo,window,axial,linear"
DEFAULT_SIZES = "16..512"
MEMORY_FRACTION = 0.75  # of MemAvailable, when --max-memory is not given
MIN_SIDE = 8  # Window(8), Halo(8, 3) and Neighborhood(7) need at least 8 positions per axis
COLUMNS = ("pattern", "backend", "execution", "form", "frames", "side", "tokens", "heads", "head_dim", "batch",
           "status", "fwd_ms", "fwdbwd_ms", "peak_mib", "pred_gflops", "pred_saved_mib", "pred_peak_mib",
           "peak_vs_pred", "pred_fwdbwd_ms", "repeats", "threads", "memory_method")


# ---------------------------------------------------------------------------------------------------
# what to run
def make_pattern(name: str, side: int):
    """``(pattern, form)`` of a sweep pattern name on an ``side × side`` grid (module docstring)."""
    from ..ops import Axial, Global, Halo, Neighborhood, Strided, Window

    table = {
        "global": (Global(), "softmax"), "neighborhood": (Neighborhood(7), "softmax"),
        "halo": (Halo(8, 3), "softmax"), "window": (Window(8), "softmax"), "axial": (Axial(0), "softmax"),
        "strided": (Strided(side, side), "softmax"), "linear": (Global(), "linear"),
    }
    if name not in table:
        raise ValueError(f"--patterns: unknown pattern {name!r}; expected one of {', '.join(PATTERN_NAMES)}")
    return table[name]


def video_calls(name: str, frames: int, side: int, heads: int) -> list[tuple]:
    """The attention calls of one layer of video variant ``name`` on a ``(frames, side, side)`` tubelet grid:
    ``[(pattern, form, kv_grid, heads), ...]`` (module docstring)."""
    from ..ops import Axial, Global, Window

    grid = (frames, side, side)
    frame, time = Window((1, side, side)), Axial(0)
    table = {
        "st": [(Global(), grid, heads)], "fe": [(frame, grid, heads), (Global(), (frames,), heads)],
        "fsa": [(frame, grid, heads), (time, grid, heads)],
        "fdp": [(frame, grid, heads // 2), (time, grid, heads - heads // 2)],
        "window3d": [(Window(tuple(min(w, n) for w, n in zip(VIDEO_WINDOW, grid, strict=True))), grid, heads)],
    }
    if name not in table:
        raise ValueError(f"--patterns: unknown video pattern {name!r}; expected one of "
                         f"{', '.join(VIDEO_PATTERN_NAMES)}")
    return [(pattern, "softmax", g, h) for pattern, g, h in table[name]]


def parse_patterns(text: str, video: bool = False) -> list[tuple[str, str, str]]:
    """``'global,global@reference,window'`` → ``[(label, name, backend), ...]`` (ValueError on bad names); with
    ``video``, names of :data:`VIDEO_PATTERN_NAMES`."""
    out = []
    for label in (p.strip() for p in str(text).split(",")):
        if not label:
            continue
        name, _, backend = label.partition("@")
        backend = backend or "auto"
        if video:
            video_calls(name, 8, 8, 4)
        else:
            make_pattern(name, 16)
        if backend not in BACKENDS:
            raise ValueError(f"--patterns: unknown backend {backend!r} in {label!r}; expected one of {BACKENDS}")
        if video:
            for pattern, form, _, _ in video_calls(name, 8, 8, 4):
                _execution(pattern, form, backend, 32, name)
        else:
            execution_for(name, backend, 16, 32)  # refuses impossible pairs, e.g. window@linear
        if label not in [o[0] for o in out]:
            out.append((label, name, backend))
    if not out:
        raise ValueError(f"--patterns: expected a comma list such as {DEFAULT_PATTERNS!r}, got {text!r}")
    return out


def parse_sizes(text: str, minimum: int = 8) -> list[int]:
    """Grid sides: ``'16..512'`` (powers of two: 16, 32, ..., 512) or a comma list ``'8,16,24'``; each ≥
    ``minimum`` (8; frames in video mode: 1)."""
    text = str(text).strip()
    try:
        if ".." in text:
            lo, hi = (int(x) for x in text.split(".."))
            if lo < 1 or hi < lo:
                raise ValueError
            sizes = [lo * 2**i for i in range(int(math.log2(hi / lo)) + 1) if lo * 2**i <= hi]
        else:
            sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--sizes: expected 'LO..HI' (powers of two from LO to HI) or a comma list of grid sides, "
                         f"got {text!r}") from None
    if not sizes or any(s < minimum for s in sizes):
        why = " (Window(8), Halo(8, 3))" if minimum == MIN_SIDE else ""
        raise ValueError(f"--sizes: values must be ≥ {minimum}{why}, got {text!r}")
    return sorted(set(sizes))


def execution_for(name: str, backend: str, side: int, head_dim: int) -> str:
    """The execution (:data:`visionattn.analysis.cost.EXECUTIONS`) that ``backend`` takes for the pattern."""
    pattern, form = make_pattern(name, side)
    return _execution(pattern, form, backend, head_dim, name)


def _execution(pattern, form: str, backend: str, head_dim: int, name: str) -> str:
    from ..ops import Global
    from .cost import default_execution

    if backend == "auto":
        return default_execution(pattern, form, head_dim, head_dim)
    if backend == "reference":
        return "reference"
    if backend == "blocked" and form == "softmax" and pattern.separable:
        return "blocked-flash"
    if backend == "linear" and form == "linear" and isinstance(pattern, Global):
        return "linear"
    raise ValueError(f"--patterns: backend {backend!r} cannot run {name!r} ({pattern}, form={form!r})")


@dataclass(frozen=True)
class LayerCost:
    """The cost of a video layer's calls together: FLOPs and saved bytes add up; the peak is every call's saved
    activations plus the largest transient of one call's backward."""

    execution: str
    form: str
    flops: int
    saved_bytes: int
    peak_bytes: int


@dataclass(frozen=True)
class Case:
    """One measurement: a pattern on a ``side × side`` grid, float32 ``(batch, side, side, heads, head_dim)``; or,
    with ``frames`` > 0, the calls of one layer of video variant ``name`` on a ``(frames, side, side)`` grid."""

    label: str
    name: str
    backend: str
    side: int
    heads: int = 4
    head_dim: int = 32
    batch: int = 1
    repeats: int = 3
    threads: int = 1
    frames: int = 0

    def calls(self) -> list[tuple]:
        """``[(pattern, form, kv_grid, heads), ...]``: one call, or a video layer's (:func:`video_calls`)."""
        if self.frames:
            return video_calls(self.name, self.frames, self.side, self.heads)
        pattern, form = make_pattern(self.name, self.side)
        return [(pattern, form, (self.side, self.side), self.heads)]

    @property
    def tokens(self) -> int:
        return (self.frames or 1) * self.side**2

    def predict(self):
        """The analytic :class:`visionattn.analysis.cost.OperatorCost` of the case's execution (a
        :class:`LayerCost` of all of them in video mode)."""
        from .cost import operator_cost

        costs = [operator_cost(pattern, grid, heads=heads, head_dim=self.head_dim, batch=self.batch, form=form,
                               execution=_execution(pattern, form, self.backend, self.head_dim, self.name))
                 for pattern, form, grid, heads in self.calls()]
        if not self.frames:
            return costs[0]
        saved = sum(c.saved_bytes for c in costs)
        return LayerCost("+".join(dict.fromkeys(c.execution for c in costs)), "softmax", sum(c.flops for c in costs),
                         saved, saved + max(c.peak_bytes - c.saved_bytes for c in costs))

    def input_bytes(self) -> int:
        """q, k, v and the output gradient, allocated before the measured pass (float32)."""
        return sum(4 * 4 * self.batch * math.prod(grid) * heads * self.head_dim for _, _, grid, heads in self.calls())


# ---------------------------------------------------------------------------------------------------
# the child process
def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _fixed_mmap_threshold() -> bool:
    """Make glibc mmap every block of 64 KiB or more (and unmap it on free), so that RSS follows the live tensors
    instead of heap fragmentation (with the default adaptive threshold, freed 1-32 MiB blocks stay in the heap
    and inflate the peak, by an amount that depends on the allocation history). True where it took effect."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").mallopt(-3, 64 << 10) == 1  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> tuple[int, str]:
    """Baseline (KiB) for peak-RSS growth: the current RSS after ``malloc_trim`` and a reset of the kernel's
    high-water mark (``VmHWM`` method); where that is not possible, ``ru_maxrss`` (the peak so far: a lower
    bound on growth)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return status_kib("VmRSS"), "VmHWM"
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def peak_kib(method: str) -> int:
    return status_kib("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


PARTS = ("memory", "time")


def measure_case(case: Case, part: str) -> dict:
    """Run in a fresh process. ``part='time'``: ``fwd_ms`` and ``fwdbwd_ms``, medians of ``repeats`` runs after a
    warm-up, with the default allocator. ``part='memory'``: ``peak_mib``, the RSS growth of one forward+backward
    after a warm-up, with a fixed mmap threshold from the start (:func:`_fixed_mmap_threshold`), and
    ``memory_method``."""
    import torch

    from ..ops import attention

    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    fixed = part == "memory" and _fixed_mmap_threshold()
    torch.set_num_threads(case.threads)
    gen = torch.Generator().manual_seed(0)
    inputs = []  # per call: pattern, form, q, k, v, output gradient
    for pattern, form, grid, heads in case.calls():
        q, k, v = (torch.randn(case.batch, *grid, heads, case.head_dim, generator=gen).requires_grad_()
                   for _ in range(3))
        grad = torch.randn(case.batch, *pattern.query_grid(grid), heads, case.head_dim, generator=gen)
        inputs.append((pattern, form, q, k, v, grad))
    backend = case.backend

    def forward():
        with torch.no_grad():
            return [attention(q, k, v, pattern, form=form, backend=backend) for pattern, form, q, k, v, _ in inputs]

    def forward_backward():
        outs = [attention(q, k, v, pattern, form=form, backend=backend) for pattern, form, q, k, v, _ in inputs]
        torch.autograd.backward(outs, [g for *_, g in inputs])
        for *_, q, k, v, _ in inputs:
            q.grad = k.grad = v.grad = None

    forward_backward()  # warm-up: kernels, the blocked backend's plan
    forward()
    if part == "memory":
        base, method = reset_peak_rss()
        forward_backward()
        return {"peak_mib": (peak_kib(method) - base) / 1024, "memory_method": method + ("+mmap" if fixed else "")}
    fwd, fwdbwd = [], []
    for _ in range(case.repeats):
        t0 = time.perf_counter()
        forward()
        fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        forward_backward()
        fwdbwd.append(time.perf_counter() - t0)
    return {"fwd_ms": 1e3 * statistics.median(fwd), "fwdbwd_ms": 1e3 * statistics.median(fwdbwd)}


def _child(case_dict: dict, part: str, conn) -> None:
    try:
        conn.send(measure_case(Case(**case_dict), part))
    except Exception as err:  # noqa: BLE001 - reported in the row, the sweep goes on
        conn.send({"error": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


def _run_child(case: Case, part: str, timeout: float, target, start_method: str) -> dict:
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context(start_method)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target or _child, args=(asdict(case), part, child), daemon=True)
    proc.start()
    child.close()
    result = None
    try:
        if parent.poll(timeout):
            result = parent.recv()
    except EOFError:
        result = None
    finally:
        parent.close()
    proc.join(None if result is not None else 10)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": f"timed out after {timeout:.0f} s (killed)"}
    if result is None:
        code = proc.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = "; out of memory?" if -code == signal.SIGKILL else ""
            return {"status": f"died: killed by {name}{hint}"}
        return {"status": f"failed: exit code {code}"}
    if "error" in result:
        return {"status": f"failed: {result['error']}"[:300]}
    return {"status": "ok", **result}


def run_case(case: Case, timeout: float, target=None, start_method: str = "fork") -> dict:
    """Measure ``case``: memory in one fresh process, then time in another (:func:`measure_case`; ``target`` replaces
    the child function, for tests). Returns the merged measurements with ``status='ok'``, or only a ``status``
    saying the first child that died (signal), failed (exception / exit code) or ran past ``timeout`` seconds
    (it is killed)."""
    out = {}
    for part in PARTS:
        result = _run_child(case, part, timeout, target, start_method)
        if result["status"] != "ok":
            return {"status": result["status"]}
        out.update(result)
    return out


# ---------------------------------------------------------------------------------------------------
# the sweep
def mem_available_gib() -> float | None:
    """``MemAvailable`` of /proc/meminfo in GiB (None where unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kib / 2**20
    except (OSError, StopIteration, ValueError):
        return None


def memory_budget(max_memory_gib: float | None) -> tuple[float, str]:
    """``(GiB, where from)``: ``--max-memory`` if given, else 75 % of MemAvailable now."""
    if max_memory_gib is not None:
        return float(max_memory_gib), "--max-memory"
    available = mem_available_gib()
    if available is None:
        return float("inf"), "MemAvailable unreadable"
    return MEMORY_FRACTION * available, f"{MEMORY_FRACTION:.0%} of MemAvailable"


def _row(case: Case, cost, status: str, pred_fwdbwd_ms: float | None, measured: dict | None = None) -> dict:
    measured = measured or {}
    peak = measured.get("peak_mib")
    pred_peak = cost.peak_bytes / 2**20
    return {
        "pattern": case.label, "backend": case.backend, "execution": cost.execution, "form": cost.form,
        "frames": case.frames or None, "side": case.side, "tokens": case.tokens, "heads": case.heads,
        "head_dim": case.head_dim, "batch": case.batch, "status": status, "fwd_ms": measured.get("fwd_ms"),
        "fwdbwd_ms": measured.get("fwdbwd_ms"),
        "peak_mib": peak, "pred_gflops": cost.flops / 1e9, "pred_saved_mib": cost.saved_bytes / 2**20,
        "pred_peak_mib": pred_peak, "peak_vs_pred": None if peak is None else peak / pred_peak,
        "pred_fwdbwd_ms": pred_fwdbwd_ms, "repeats": case.repeats, "threads": case.threads,
        "memory_method": measured.get("memory_method"),
    }


def sweep(patterns, sizes, *, heads: int = 4, head_dim: int = 32, batch: int = 1, repeats: int = 3,
          threads: int = 1, max_seconds: float = 4.0, max_memory_gib: float | None = None,
          timeout: float | None = None, log=print, start_method: str = "fork", target=None,
          video_side: int | None = None) -> list[dict]:
    """Measure every pattern (``parse_patterns`` output or its text) at every size; returns the rows
    (:data:`COLUMNS`). Patterns run one after the other, sizes ascending; ``log(text)`` reports each row.
    ``timeout`` per case defaults to ``120 + 10 · max_seconds · (repeats + 2)`` seconds. ``video_side``: video mode
    (module docstring): ``sizes`` are frame counts of a ``(T, video_side, video_side)`` grid."""
    video = video_side is not None
    patterns = parse_patterns(patterns, video) if isinstance(patterns, str) else list(patterns)
    sizes = parse_sizes(sizes, 1 if video else MIN_SIDE) if isinstance(sizes, str) else sorted(set(sizes))
    if max_seconds <= 0:
        raise ValueError(f"--max-seconds must be > 0, got {max_seconds}")
    if max_memory_gib is not None and max_memory_gib <= 0:
        raise ValueError(f"--max-memory must be > 0 GiB, got {max_memory_gib}")
    timeout = timeout or 120 + 10 * max_seconds * (repeats + 2)
    rows = []
    for label, name, backend in patterns:
        last = None  # (flops, fwdbwd_ms) of the last measured size
        stopped = None  # why the rest of this pattern is skipped
        for side in sizes:
            case = Case(label, name, backend, video_side or side, heads, head_dim, batch, repeats, threads,
                        side if video else 0)
            cost = case.predict()
            pred_ms = None if last is None else last[1] * cost.flops / last[0]
            budget, source = memory_budget(max_memory_gib)
            need = (cost.peak_bytes + case.input_bytes()) / 2**30
            if need > budget:
                status = f"skipped: predicted {need:.3g} GiB > {budget:.3g} GiB available ({source})"
            elif pred_ms is not None and pred_ms / 1e3 > max_seconds:
                status = f"skipped: predicted {pred_ms / 1e3:.3g} s > {max_seconds:g} s (--max-seconds)"
            elif stopped:
                status = f"skipped: {stopped}"
            else:
                measured = run_case(case, timeout, target=target, start_method=start_method)
                status = measured.pop("status")
                if status == "ok":
                    last = (cost.flops, measured["fwdbwd_ms"])
                else:
                    stopped = f"stopped after side {side}: {status.split(':')[0]}"
                rows.append(_row(case, cost, status, pred_ms, measured))
                log(format_progress(rows[-1]))
                continue
            rows.append(_row(case, cost, status, pred_ms))
            log(format_progress(rows[-1]))
    return rows


def format_progress(row: dict) -> str:
    where = f"frames {row['frames']:>4}" if row.get("frames") else f"side {row['side']:>4}"
    head = f"{row['pattern']:<18} {where}  tokens {row['tokens']:>7}"
    if row["status"] != "ok":
        return f"{head}  {row['status']}"
    return (f"{head}  fwd {row['fwd_ms']:9.2f} ms  fwd+bwd {row['fwdbwd_ms']:9.2f} ms  peak {row['peak_mib']:8.1f} MiB"
            f" (model {row['pred_peak_mib']:.1f})")


def write_csv(rows: list[dict], path) -> None:
    """``rows`` as CSV with :data:`COLUMNS` (floats to 5 significant digits, empty for missing values)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(row.get(k)) for k in COLUMNS})


def _csv_cell(value):
    if value is None:
        return ""
    return f"{value:.5g}" if isinstance(value, float) else value


# ---------------------------------------------------------------------------------------------------
# growth exponents and the figure
def _labels(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["pattern"] for r in rows))


def _slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two positive points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    var = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / var if var else None


def growth_exponents(rows: list[dict], points: int = 3) -> dict[str, dict]:
    """Per pattern, log-log slopes over its largest ``points`` measured sizes: ``time`` (forward+backward),
    ``time_model`` (FLOPs), ``memory`` (peak RSS growth), ``memory_model`` (predicted peak), and ``tokens``
    (the token counts used). Quadratic growth is a slope of 2, linear 1."""
    out = {}
    for label in _labels(rows):
        ok = [r for r in rows if r["pattern"] == label and r["status"] == "ok"][-points:]
        tokens = [r["tokens"] for r in ok]
        out[label] = {
            "tokens": tokens,
            "time": _slope(tokens, [r["fwdbwd_ms"] for r in ok]),
            "time_model": _slope(tokens, [r["pred_gflops"] for r in ok]),
            "memory": _slope(tokens, [r["peak_mib"] for r in ok]),
            "memory_model": _slope(tokens, [r["pred_peak_mib"] for r in ok]),
        }
    return out


def format_summary(rows: list[dict]) -> str:
    """One line per pattern: measured sizes, growth exponents (measured vs model), the largest measurement."""
    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    lines = [f"{'pattern':<18} {'measured sizes':<22} {'time exp':>8} {'model':>6} {'mem exp':>8} {'model':>6}  "
             f"largest: fwd+bwd ms, peak MiB (model)"]
    for label, g in growth_exponents(rows).items():
        ok = [r for r in rows if r["pattern"] == label and r["status"] == "ok"]
        sides = ",".join(str(r.get("frames") or r["side"]) for r in ok) or "none"
        big = ok[-1] if ok else None
        largest = "-" if big is None else (f"{big['fwdbwd_ms']:.1f}, {big['peak_mib']:.1f} "
                                           f"({big['pred_peak_mib']:.1f})")
        lines.append(f"{label:<18} {sides:<22} {fmt(g['time']):>8} {fmt(g['time_model']):>6} {fmt(g['memory']):>8} "
                     f"{fmt(g['memory_model']):>6}  {largest}")
    lines.append("exponents: log-log slope over the largest 3 measured sizes (2 = quadratic, 1 = linear in tokens)")
    return "\n".join(lines)


def plot(rows: list[dict], path, title: str = "", xlabel: str = "tokens (grid side²)") -> None:
    """Log-log PNG: forward+backward time vs tokens (left) and peak memory vs tokens (right), one colour per
    pattern; solid with dots = measured, dashed = the model (time: FLOPs scaled through the largest measured
    point; memory: the predicted peak, absolute), continued over skipped sizes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.2))
    FigureCanvasAgg(fig)
    ax_t, ax_m = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(10)]
    for i, label in enumerate(_labels(rows)):
        color = colors[i % len(colors)]
        mine = [r for r in rows if r["pattern"] == label]
        ok = [r for r in mine if r["status"] == "ok"]
        if ok:
            ax_t.plot([r["tokens"] for r in ok], [r["fwdbwd_ms"] for r in ok], "o-", color=color, label=label)
            scale = ok[-1]["fwdbwd_ms"] / ok[-1]["pred_gflops"]
            ax_t.plot([r["tokens"] for r in mine], [scale * r["pred_gflops"] for r in mine], "--", color=color,
                      alpha=0.7)
            mem = [r for r in ok if r["peak_mib"] and r["peak_mib"] > 0]
            ax_m.plot([r["tokens"] for r in mem], [r["peak_mib"] for r in mem], "o-", color=color, label=label)
        else:
            ax_m.plot([], [], "o-", color=color, label=f"{label} (not measured)")
        ax_m.plot([r["tokens"] for r in mine], [r["pred_peak_mib"] for r in mine], "--", color=color, alpha=0.7)
    for ax, ylabel in ((ax_t, "forward+backward time (ms)"), (ax_m, "peak memory growth (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    for ax in (ax_t, ax_m):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    ax_t.set_title("time: measured (solid) vs ∝ analytic FLOPs (dashed)", fontsize=10)
    ax_m.set_title("memory: measured peak RSS growth (solid) vs model (dashed)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
