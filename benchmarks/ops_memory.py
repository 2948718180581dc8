"""Section 5 of the operator benchmarks: peak memory of one fwd+bwd vs grid size, Neighborhood 7x7 vs Global.
Each case runs in a fresh process (``python benchmarks/ops_memory.py nbhd|global SIDE``) so peaks don't mix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from harness import RESULTS, note, table  # noqa: E402  (benchmarks/harness.py)

from visionattn.analysis.sweep import peak_kib, reset_peak_rss  # noqa: E402
from visionattn.ops import Global, Neighborhood, attention  # noqa: E402


def mem_child(pattern_name: str, S: int) -> None:
    """Runs in a fresh process: peak RSS growth of one fwd+bwd (B=1, C=64, 2 heads)."""
    pattern = Neighborhood(7, border="pad") if pattern_name == "nbhd" else Global()
    heads, d = 2, 32
    small = [torch.randn(1, 16, 16, heads, d, requires_grad=True) for _ in range(3)]  # load kernels first
    attention(*small, pattern, backend="blocked").sum().backward()
    q, k, v = (torch.randn(1, S, S, heads, d, requires_grad=True) for _ in range(3))
    g = torch.randn(1, S, S, heads, d)
    del small
    res = {"inputs_mib": 3 * q.numel() * 4 / 2**20}
    for call in ("first", "second"):  # the first call also builds the blocked backend's cached plan
        before, method = reset_peak_rss()
        t0 = time.perf_counter()
        attention(q, k, v, pattern, backend="blocked").backward(g)
        res[f"seconds_{call}"] = time.perf_counter() - t0
        after = peak_kib(method)
        res[f"peak_growth_mib_{call}"] = (after - before) / 1024
        res["method"] = method
        q.grad = k.grad = v.grad = None
    print(json.dumps(res))


def bench_memory(args, dtypes) -> None:
    grids = (32, 64) if args.quick else (64, 128, 256, 512)
    limit_gib = 8.0
    rows = []
    for pname, label in (("nbhd", "Neighborhood(7, pad)"), ("global", "Global")):
        for S in grids:
            n = S * S
            dense_gib = n * n * 2 * 4 / 2**30  # one fp32 (heads=2, N, N) score tensor
            if pname == "global" and dense_gib > limit_gib:
                rows.append([label, f"{S}x{S}", f"{n}", "-", f"skipped: would need {dense_gib:.0f} GiB", "-", "-", "-"])
                continue
            cmd = [sys.executable, os.path.abspath(__file__), pname, str(S)]
            proc = None
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            except Exception as e:  # noqa: BLE001 - one failed case must not end the run
                tail = " ".join((proc.stderr if proc is not None else "").split())[-160:]
                rows.append([label, f"{S}x{S}", f"{n}", "-", f"failed: {type(e).__name__} {tail}", "-", "-", "-"])
                continue
            per_tok = res["peak_growth_mib_second"] * 2**20 / n
            RESULTS.append({"section": "memory", "case": f"{label} {S}x{S}", "dtype": "fp32", **res})
            rows.append([label, f"{S}x{S}", f"{n}", f"{res['inputs_mib']:.1f}", f"{res['peak_growth_mib_first']:.1f}",
                         f"{res['peak_growth_mib_second']:.1f}", f"{per_tok:.0f}", f"{res['seconds_second']:.2f}"])
    table(
        "5. Peak RSS growth of one fwd+bwd vs grid (blocked, fp32, B=1, C=64, 2 heads), fresh process per case",
        ["pattern", "grid", "tokens", "q+k+v MiB", "peak MiB, 1st call", "peak MiB, 2nd call", "bytes/token (2nd)",
         "fwd+bwd s (2nd)"],
        rows,
    )
    note(f"Global is skipped where one dense (2, N, N) fp32 score tensor would exceed {limit_gib:.0f} GiB;")
    note("1st call includes building the blocked backend's cached plan; 2nd call is the steady state;")
    note("peak = kernel VmHWM growth")


if __name__ == "__main__":
    mem_child(sys.argv[1], int(sys.argv[2]))
