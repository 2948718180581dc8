#!/usr/bin/env python
"""Benchmarks of ``visionattn.ops.attention`` (blocked backend, CPU) against the usual anchors.

One process, side by side: in every comparison the implementations are timed in alternating order
(ABC, CBA, ABC, ...) so that machine noise hits all of them; we quote medians and the inter-quartile spread.
``ratio = anchor ms / ours ms`` (> 1 means we are faster).

Sections (``--only``):
  window   Swin ``WindowAttention`` from timm (+ window_partition / window_reverse) vs our qkv Linear +
           ``attention(Window(7), RelativeBias)`` + proj Linear, on a (B, H, W, C) map.
  halo     timm ``HaloAttn`` (NCHW, 1x1 convs, relative logits) vs our 1x1 projections +
           ``attention(Halo(8, 3), RelativeLogits)`` with NCHW <-> NHWC permutes.
  nbhd     Neighborhood 7x7 (op only) vs a naive unfold SASA and vs compiled FlexAttention (forward only).
  flops    achieved GFLOP/s of the op alone vs the measured fp32 matmul peak.
  memory   peak RSS growth of fwd+bwd vs grid size, Neighborhood 7x7 vs Global, one subprocess per case.

Usage: ``python benchmarks/ops.py [--quick] [--dtype fp32,bf16] [--only window,halo] [--out results.json]``
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from harness import (  # noqa: E402  (benchmarks/harness.py)
    NOISE_LEFT,
    OTHERS,
    RESULTS,
    Budget,
    busy,
    forward_backward,
    forward_only,
    measure,
    ms,
    note,
    ratio,
    record,
    table,
)
from noise import set_clock  # noqa: E402  (benchmarks/noise.py)
from ops_memory import bench_memory  # noqa: E402  (benchmarks/ops_memory.py)

from visionattn.ops import (  # noqa: E402
    Global,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Window,
    attention,
    neighborhood_tile,
)

SECTIONS = ("window", "halo", "nbhd", "flops", "memory")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# ---------------------------------------------------------------------------------------------------
# 1. Window vs timm Swin WindowAttention
class OurWindowAttention(nn.Module):
    """qkv Linear + attention(Window, RelativeBias) + proj Linear on a (B, H, W, C) map."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(heads, 2 * window - 1, 2 * window - 1) * 0.02)
        self.skip_attention = False  # True: o = v, i.e. only the projections and layout (an Amdahl floor)

    def forward(self, x):
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).reshape(B, H, W, 3, self.heads, C // self.heads).unbind(3)
        if self.skip_attention:
            o = v + 0 * (q + k)
        else:
            o = attention(q, k, v, Window(self.window), position=RelativeBias(self.table), backend="blocked")
        return self.proj(o.reshape(B, H, W, C))

    @torch.no_grad()
    def load_from_timm(self, timm_attn: nn.Module) -> None:
        self.qkv.load_state_dict(timm_attn.qkv.state_dict())
        self.proj.load_state_dict(timm_attn.proj.state_dict())
        w = self.window
        # timm indexes its table by (query - key); ours is indexed by (key - query): flip both axes.
        table = timm_attn.relative_position_bias_table.t().reshape(self.heads, 2 * w - 1, 2 * w - 1)
        self.table.copy_(table.flip(1, 2))


class NoAttention(nn.Module):
    """Runs one of our modules with ``o = v`` instead of attention: projections + layout only. Its time bounds
    the module-level ratio: even a free attention op cannot beat ``anchor / this``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        self.module.skip_attention = True
        try:
            return self.module(x)
        finally:
            self.module.skip_attention = False


class TimmWindowJob(nn.Module):
    """timm's full job from a (B, H, W, C) map: window_partition -> WindowAttention -> window_reverse."""

    def __init__(self, attn: nn.Module, window: int):
        super().__init__()
        from timm.models.swin_transformer import window_partition, window_reverse

        self.attn, self.window = attn, window
        self.partition, self.reverse = window_partition, window_reverse

    def forward(self, x):
        B, H, W, C = x.shape
        ws = (self.window, self.window)
        windows = self.partition(x, ws).view(-1, self.window * self.window, C)
        out = self.attn(windows).view(-1, self.window, self.window, C)
        return self.reverse(out, ws, H, W)


def bench_window(args, dtypes) -> None:
    from timm.models.swin_transformer import WindowAttention

    if args.quick:
        B, S, C, heads, win = 1, 14, 96, 3, 7
    else:
        B, S, C, heads, win = 8, 56, 96, 3, 7
    torch.manual_seed(0)
    timm_attn = WindowAttention(C, heads, window_size=win)
    timm_attn.fused_attn = False  # timm's default for Swin (fused SDPA is 'experimental' there)
    timm_fused = WindowAttention(C, heads, window_size=win)
    timm_fused.load_state_dict(timm_attn.state_dict())
    timm_fused.fused_attn = True
    ours = OurWindowAttention(C, heads, win)
    ours.load_from_timm(timm_attn)
    impls = {"ours": ours, "timm": TimmWindowJob(timm_attn, win), "timm-sdpa": TimmWindowJob(timm_fused, win),
             "floor": NoAttention(ours)}
    x32 = torch.randn(B, S, S, C)
    with torch.no_grad():
        diff = (impls["ours"](x32) - impls["timm"](x32)).abs().max().item()
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        mods = {k: v.to(dtype) for k, v in impls.items()}
        x = x32.to(dtype)
        g = torch.randn_like(x)
        for mode in ("fwd", "fwd+bwd"):
            if mode == "fwd":
                cases = {k: forward_only(m, x) for k, m in mods.items()}
            else:
                xg = x.clone().requires_grad_(True)
                cases = {k: forward_backward(m, [xg], list(m.parameters()), g) for k, m in mods.items()}
            st = measure(cases, args.budget)
            record("window", f"{S}x{S} C={C} h={heads} w={win} B={B}", dname, mode, st)
            rows.append(
                [dname, mode, ms(st["ours"]), ms(st["timm"]), ms(st["timm-sdpa"]),
                 ratio(st["timm"], st["ours"]), ratio(st["timm-sdpa"], st["ours"]), ms(st["floor"]),
                 ratio(st["timm"], st["floor"]), busy(st)]
            )
        for m in impls.values():
            m.float()
    table(
        f"1. Window(7) + RelativeBias module vs timm Swin WindowAttention (+partition/reverse), "
        f"{S}x{S}, C={C}, {heads} heads, batch {B}  [ms median ±IQR]",
        ["dtype", "mode", "ours", "timm", "timm-sdpa", "ratio vs timm", "ratio vs timm-sdpa", "ours w/o attn",
         "bound vs timm", "others' CPU"],
        rows,
    )
    note(f"ours == timm check (fp32, same weights): max |diff| = {diff:.2e}")
    note("timm = WindowAttention as shipped (fused_attn=False: explicit softmax); timm-sdpa = fused_attn=True")
    note("ours w/o attn = our module with o = v (qkv + proj + layout only); bound = timm / that: the best ratio a")
    note("free attention op could give at module level")


# ---------------------------------------------------------------------------------------------------
# 2. Halo vs timm HaloAttn
class OurHaloAttn(nn.Module):
    """1x1 projections (Linear on channels-last) + attention(Halo, RelativeLogits); NCHW in, NCHW out."""

    def __init__(self, dim: int, heads: int, block: int, halo: int):
        super().__init__()
        self.heads, self.block, self.halo = heads, block, halo
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        r = block + 2 * halo - 1  # = max |offset| over allowed pairs; table 2r + 1 like timm's 2 win - 1
        self.rel_h = nn.Parameter(torch.randn(2 * r + 1, self.head_dim) * self.head_dim**-0.5)
        self.rel_w = nn.Parameter(torch.randn(2 * r + 1, self.head_dim) * self.head_dim**-0.5)
        self.skip_attention = False  # True: o = v, i.e. only the projections and layout (an Amdahl floor)

    def forward(self, x):
        B, C, H, W = x.shape
        x = x.permute(0, 2, 3, 1)
        q = self.q(x).reshape(B, H, W, self.heads, self.head_dim)
        k, v = self.kv(x).reshape(B, H, W, self.heads, 2 * self.head_dim).split(self.head_dim, dim=-1)
        if self.skip_attention:
            o = v + 0 * (q + k)
        else:
            pos = RelativeLogits((self.rel_h, self.rel_w))
            o = attention(q, k, v, Halo(self.block, self.halo), position=pos, backend="blocked")
        return o.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def load_from_timm(self, m: nn.Module) -> None:
        self.q.weight.copy_(m.q.weight[:, :, 0, 0])
        self.kv.weight.copy_(m.kv.weight[:, :, 0, 0])
        # timm's relative index for offset Δ (key - query) is Δ + halo + win - 1, ours is Δ + r: shift by halo.
        for ours, theirs in ((self.rel_h, m.pos_embed.height_rel), (self.rel_w, m.pos_embed.width_rel)):
            ours.zero_()
            ours[: ours.shape[0] - self.halo] = theirs[self.halo :]


def bench_halo(args, dtypes) -> None:
    from timm.layers.halo_attn import HaloAttn

    if args.quick:
        B, S, C, heads, block, halo = 1, 24, 64, 4, 8, 3
    else:
        B, S, C, heads, block, halo = 8, 32, 256, 8, 8, 3
    torch.manual_seed(0)
    timm_mod = HaloAttn(C, num_heads=heads, block_size=block, halo_size=halo)
    ours = OurHaloAttn(C, heads, block, halo)
    ours.load_from_timm(timm_mod)
    impls = {"ours": ours, "timm": timm_mod, "floor": NoAttention(ours)}
    x32 = torch.randn(B, C, S, S)
    with torch.no_grad():
        d = (ours(x32) - timm_mod(x32))[:, :, block : S - block, block : S - block]
        diff = d.abs().max().item() if d.numel() else float("nan")
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        mods = {k: v.to(dtype) for k, v in impls.items()}
        x = x32.to(dtype)
        g = torch.randn_like(x)
        for mode in ("fwd", "fwd+bwd"):
            if mode == "fwd":
                cases = {k: forward_only(m, x) for k, m in mods.items()}
            else:
                xg = x.clone().requires_grad_(True)
                cases = {k: forward_backward(m, [xg], list(m.parameters()), g) for k, m in mods.items()}
            st = measure(cases, args.budget)
            record("halo", f"{S}x{S} C={C} h={heads} block={block} halo={halo} B={B}", dname, mode, st)
            rows.append([dname, mode, ms(st["ours"]), ms(st["timm"]), ratio(st["timm"], st["ours"]), ms(st["floor"]),
                         ratio(st["timm"], st["floor"]), busy(st)])
        for m in impls.values():
            m.float()
    table(
        f"2. Halo({block}, {halo}) + RelativeLogits module vs timm HaloAttn, {S}x{S}, C={C}, {heads} heads, "
        f"batch {B}, NCHW in/out  [ms median ±IQR]",
        ["dtype", "mode", "ours", "timm", "ratio vs timm", "ours w/o attn", "bound vs timm", "others' CPU"],
        rows,
    )
    note(f"ours == timm check (fp32, interior blocks, same weights): max |diff| = {diff:.2e}")
    note("timm zero-pads keys at the image border and attends them; ours masks them (same cost model)")
    note("ours w/o attn = our module with o = v (q/kv Linear + NCHW<->NHWC only); bound = timm / that")


# ---------------------------------------------------------------------------------------------------
# 3. Neighborhood vs naive unfold SASA vs compiled FlexAttention
def sasa_unfold(q, k, v, kernel: int, scale: float):
    """Naive SASA: unfold keys/values into kernel x kernel patches (zero padding), softmax over them.
    Channels-last (B, H, W, h, d) in and out, like ours."""
    B, H, W, h, d = q.shape
    kk, pad = kernel * kernel, kernel // 2

    def patches(t):  # (B, H, W, h, d) -> (B, h, d, k*k, H*W)
        t = t.permute(0, 3, 4, 1, 2).reshape(B, h * d, H, W)
        return F.unfold(t, kernel, padding=pad).view(B, h, d, kk, H * W)

    qq = q.permute(0, 3, 4, 1, 2).reshape(B, h, d, 1, H * W)
    attn = ((qq * patches(k)).sum(2) * scale).softmax(2)  # (B, h, k*k, HW)
    out = (attn.unsqueeze(2) * patches(v)).sum(3)  # (B, h, d, HW)
    return out.view(B, h, d, H, W).permute(0, 3, 4, 1, 2)


def ours_nbhd(q, k, v, kernel: int):
    return attention(q, k, v, Neighborhood(kernel, border="pad"), backend="blocked")


def flex_neighborhood(H: int, W: int, kernel: int):
    """(compiled flex_attention, BlockMask) for the 'pad' kernel x kernel neighbourhood on a raster grid."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    r = kernel // 2

    def mask_mod(b, h, q_idx, kv_idx):
        return ((q_idx // W - kv_idx // W).abs() <= r) & ((q_idx % W - kv_idx % W).abs() <= r)

    block_mask = create_block_mask(mask_mod, None, None, H * W, H * W, device="cpu")
    return torch.compile(flex_attention, dynamic=False), block_mask


def bench_nbhd(args, dtypes) -> None:
    kernel, C, heads = 7, 128, 4
    d = C // heads
    sizes = [(32, 1)] if args.quick else [(56, 4), (32, 8)]
    rows, flex_rows = [], []
    for S, B in sizes:
        torch.manual_seed(0)
        q32, k32, v32 = (torch.randn(B, S, S, heads, d) for _ in range(3))
        with torch.no_grad():
            a, b = ours_nbhd(q32, k32, v32, kernel), sasa_unfold(q32, k32, v32, kernel, d**-0.5)
            r = kernel // 2
            diff = (a - b)[:, r : S - r, r : S - r].abs().max().item()
        note(f"{S}x{S}: ours == unfold SASA check (fp32, interior): max |diff| = {diff:.2e}")
        for dname in dtypes:
            dtype = DTYPES[dname]
            q, k, v = (t.to(dtype) for t in (q32, k32, v32))
            g = torch.randn_like(q)
            case = f"{S}x{S} C={C} h={heads} k={kernel} B={B}"
            for mode in ("fwd", "fwd+bwd"):
                if mode == "fwd":
                    cases = {
                        "ours": forward_only(ours_nbhd, q, k, v, kernel),
                        "sasa": forward_only(sasa_unfold, q, k, v, kernel, d**-0.5),
                    }
                else:
                    ins = [t.clone().requires_grad_(True) for t in (q, k, v)]
                    cases = {
                        "ours": forward_backward(lambda a, b, c: ours_nbhd(a, b, c, kernel), ins, [], g),
                        "sasa": forward_backward(lambda a, b, c: sasa_unfold(a, b, c, kernel, d**-0.5), ins, [], g),
                    }
                st = measure(cases, args.budget)
                record("nbhd", case, dname, mode, st)
                rows.append([f"{S}x{S} B={B}", dname, mode, ms(st["ours"]), ms(st["sasa"]),
                             ratio(st["sasa"], st["ours"]), busy(st)])
            # compiled FlexAttention: forward only on CPU
            if args.quick or args.no_compile:
                flex_rows.append([f"{S}x{S} B={B}", dname, "fwd", "-", "skipped (--quick/--no-compile)", "-", "-", "-"])
                continue
            if dname != "fp32":
                flex_rows.append([f"{S}x{S} B={B}", dname, "fwd", "-", "not run (fp32 only: compile time)", "-", "-",
                                  "-"])
                continue
            try:
                t0 = time.perf_counter()
                flex, block_mask = flex_neighborhood(S, S, kernel)
                qf, kf, vf = (t.reshape(B, S * S, heads, d).transpose(1, 2).contiguous() for t in (q, k, v))
                with torch.no_grad():
                    of = flex(qf, kf, vf, block_mask=block_mask)
                compile_s = time.perf_counter() - t0
                with torch.no_grad():
                    ref = ours_nbhd(q, k, v, kernel).reshape(B, S * S, heads, d).transpose(1, 2)
                fdiff = (of.float() - ref.float()).abs().max().item()
                st = measure(
                    {"ours": forward_only(ours_nbhd, q, k, v, kernel),
                     "flex": forward_only(functools.partial(flex, block_mask=block_mask), qf, kf, vf)},
                    args.budget,
                )
                record("nbhd", case, dname, "fwd", st, anchor="flex-compiled", compile_s=compile_s)
                flex_rows.append([f"{S}x{S} B={B}", dname, "fwd", ms(st["ours"]), ms(st["flex"]),
                                  ratio(st["flex"], st["ours"]), f"{compile_s:.0f} s, max diff {fdiff:.1e}", busy(st)])
            except Exception as e:  # noqa: BLE001 - report and continue
                msg = " ".join(f"{type(e).__name__}: {e}".split())[:200]
                print(f"  flex compile failed ({S}x{S} {dname}): {msg}")
                flex_rows.append([f"{S}x{S} B={B}", dname, "fwd", "-", "failed", "-", "-", "-"])
            flex_rows.append([f"{S}x{S} B={B}", dname, "fwd+bwd", "-", "n/a: no CPU backward", "-", "-", "-"])
    table(
        f"3a. Neighborhood({kernel}, border='pad') op vs naive unfold SASA, C={C}, {heads} heads  [ms median ±IQR]",
        ["grid", "dtype", "mode", "ours", "unfold SASA", "ratio vs SASA", "others' CPU"],
        rows,
    )
    table(
        "3b. Neighborhood op vs torch.compile(flex_attention) + 7x7 block mask, CPU, forward only",
        ["grid", "dtype", "mode", "ours", "flex (compiled)", "ratio vs flex", "compile / check", "others' CPU"],
        flex_rows,
    )
    note("flex gets its native (B, h, N, d) contiguous layout for free; ours/SASA start and end channels-last")
    if not args.quick:
        tile_sweep(args, dtypes)


def tile_sweep(args, dtypes) -> None:
    """Which Neighborhood query tile (per axis) is fastest on this machine (fp32 fwd and fwd+bwd, 56x56)."""
    kernel, S, B, heads, d = 7, 56, 4, 4, 32
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, S, S, heads, d) for _ in range(3))
    g = torch.randn_like(q)
    tiles = (4, 7, 8, 14, 16)

    def with_tile(tile):
        def run(a, b, c):
            with neighborhood_tile(tile):
                return ours_nbhd(a, b, c, kernel)

        return run

    rows = []
    for mode in ("fwd", "fwd+bwd"):
        if mode == "fwd":
            cases = {str(t): forward_only(with_tile(t), q, k, v) for t in tiles}
        else:
            ins = [t.clone().requires_grad_(True) for t in (q, k, v)]
            cases = {str(t): forward_backward(with_tile(t), ins, [], g) for t in tiles}
        st = measure(cases, Budget(1, 3, 5, args.budget.seconds, args.budget.quiet_wait, args.budget.retries))
        record("nbhd-tile", f"{S}x{S} C={heads * d} h={heads} k={kernel} B={B}", "fp32", mode, st)
        best = min(st, key=lambda t: st[t]["ms"])
        rows.append([mode, *[ms(st[str(t)]) for t in tiles], best, busy(st)])
    table(
        f"3c. Neighborhood({kernel}) blocked query tile sweep (neighborhood_tile(n)), {S}x{S}, B={B}, fp32  [ms]",
        ["mode", *[f"tile {t}" for t in tiles], "fastest", "others' CPU"],
        rows,
    )


# ---------------------------------------------------------------------------------------------------
# 4. achieved GFLOP/s vs the machine's matmul peak
def matmul_peak(args) -> float:
    n = 1024 if args.quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    budget = Budget(2, 3 if args.quick else 10, 20, 2.0, args.budget.quiet_wait, args.budget.retries)
    st = measure({"mm": lambda: a @ b}, budget)["mm"]
    return 2 * n**3 / (st["ms"] * 1e-3) / 1e9


def pair_counts(pattern, grid: tuple[int, ...], tile: int) -> tuple[int, int]:
    """(useful query-key pairs from the pattern's 1D rules, pairs the blocked tiles compute incl. masked)."""
    useful, executed = 1, 1
    for a, n in enumerate(grid):
        qi, kj = torch.arange(n)[:, None], torch.arange(n)[None, :]
        useful *= int(pattern.axis_allowed(a, qi, kj, n, n).sum())
        tl = pattern.axis_tiling(a, n, n, tile)
        executed *= tl.q_index.numel() * tl.k_index.shape[1]
    return useful, executed


def bench_flops(args, dtypes) -> None:
    try:
        from visionattn.ops.backends.blocked import DEFAULT_TILE
    except ImportError:  # pragma: no cover - internal name moved
        DEFAULT_TILE = {2: 8}
    peak = matmul_peak(args)
    n = 1024 if args.quick else 2048
    print(f"\n  measured fp32 matmul peak ({n}^3, median): {peak:.1f} GFLOP/s")
    RESULTS.append({"section": "flops", "case": f"matmul {n}^3", "dtype": "fp32", "gflops": peak})
    q_ = args.quick
    configs = [  # name, pattern, grid, heads, head_dim, batch, position factory
        ("Window(7) + RelativeBias", Window(7), 14 if q_ else 56, 3, 32, 1 if q_ else 8, "bias"),
        ("Window(7)", Window(7), 14 if q_ else 56, 3, 32, 1 if q_ else 8, None),
        ("Halo(8,3) + RelativeLogits", Halo(8, 3), 16 if q_ else 32, 8, 32, 1 if q_ else 8, "logits"),
        ("Halo(8,3)", Halo(8, 3), 16 if q_ else 32, 8, 32, 1 if q_ else 8, None),
        ("Neighborhood(7, pad)", Neighborhood(7, border="pad"), 16 if q_ else 56, 4, 32, 1 if q_ else 4, None),
        ("Global", Global(), 16 if q_ else 32, 4, 32, 1 if q_ else 8, None),
    ]
    rows = []
    for name, pattern, S, heads, d, B, pos in configs:
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, S, S, heads, d) for _ in range(3))
        position = None
        if pos == "bias":
            r = pattern.max_offset((S, S))
            position = RelativeBias(torch.randn(heads, 2 * r[0] + 1, 2 * r[1] + 1) * 0.02)
        elif pos == "logits":
            r = pattern.max_offset((S, S))
            position = RelativeLogits(tuple(torch.randn(2 * ri + 1, d) * 0.1 for ri in r))
        useful, executed = pair_counts(pattern, (S, S), DEFAULT_TILE.get(2, 8))
        flops = 4 * useful * d * heads * B  # QK^T and AV, 2 flops per MAC
        exec_flops = 4 * executed * d * heads * B

        def op(a, b, c, pattern=pattern, position=position):
            return attention(a, b, c, pattern, position=position, backend="blocked")

        ins = [t.clone().requires_grad_(True) for t in (q, k, v)]
        st = measure({"fwd": forward_only(op, q, k, v)}, args.budget)["fwd"]
        st_b = measure({"fwd+bwd": forward_backward(op, ins, [], torch.randn_like(q))}, args.budget)["fwd+bwd"]
        gf = flops / (st["ms"] * 1e-3) / 1e9
        gf_b = 3 * flops / (st_b["ms"] * 1e-3) / 1e9  # bwd = 4 matmuls (dQ, dK, dV, dP): 2x fwd
        keys = useful / (S * S)
        RESULTS.append({"section": "flops", "case": f"{name} {S}x{S} h={heads} d={d} B={B}", "dtype": "fp32",
                        "fwd": st, "fwd+bwd": st_b, "useful_gflop": flops / 1e9, "gflops_fwd": gf,
                        "gflops_fwdbwd": gf_b, "peak": peak, "executed_over_useful": executed / useful})
        rows.append([name, f"{S}x{S} B={B}", f"{keys:.0f}", f"{executed / useful:.2f}", ms(st), f"{gf:.1f}",
                     f"{100 * gf / peak:.1f}%", f"{100 * exec_flops / (st['ms'] * 1e-3) / 1e9 / peak:.1f}%",
                     ms(st_b), f"{gf_b:.1f}", f"{100 * gf_b / peak:.1f}%", busy(st_b)])
    table(
        f"4. Achieved GFLOP/s of the op alone (blocked, fp32, heads x d as listed) vs matmul peak {peak:.1f} GFLOP/s",
        ["pattern", "grid", "keys/query", "tile overhead", "fwd ms", "fwd GFLOP/s", "% peak",
         "% peak (executed)", "fwd+bwd ms", "fwd+bwd GFLOP/s", "% peak", "others' CPU"],
        rows,
    )
    note("useful FLOPs = 4 * pairs * d * heads * B (QK^T + AV), pairs counted from the pattern's own rules;")
    note("'executed' counts every query-key slot of the blocked tiles (masked slots included); fwd+bwd = 3x fwd")


# ---------------------------------------------------------------------------------------------------
def machine_facts() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import timm

        timm_version = timm.__version__
    except ImportError:
        timm_version = "not installed"
    try:
        git = ["git", "-C", ROOT]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "visionattn/ops"], capture_output=True, text=True)
        commit = (commit or "unknown") + (" (visionattn/ops modified)" if dirty.stdout.strip() else "")
    except OSError:
        commit = "unknown"
    return {
        "commit": commit,
        "torch": torch.__version__,
        "timm": timm_version,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and repeat counts (< 60 s)")
    p.add_argument("--dtype", default="fp32,bf16", help="comma list of fp32,bf16")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--out", default=None, help="write all results as JSON to this file")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of FlexAttention")
    p.add_argument("--retries", type=int, default=2,
                   help="re-measure a comparison up to this many times when other processes used > 10%% of the CPU")
    p.add_argument("--noise-budget", type=float, default=180.0,
                   help="total seconds the run may spend on waiting for quiet and re-measuring (default 180)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="time per call: wall clock, or this process's CPU time (use with --threads 1 on a busy "
                        "shared machine)")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each measurement wait up to this many s for other processes to go quiet "
                        "(default 10, 0 with --quick)")
    args = p.parse_args(argv)
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    aliases = {"neighborhood": "nbhd", "sasa": "nbhd", "flex": "nbhd", "peak": "flops", "gflops": "flops",
               "mem": "memory"}
    only = [aliases.get(s.strip(), s.strip()) for s in args.only.split(",") if s.strip()]
    bad = [d for d in dtypes if d not in DTYPES] + [s for s in only if s not in SECTIONS]
    if bad:
        p.error(f"unknown dtype/section {bad}; dtypes {list(DTYPES)}, sections {list(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    set_clock(args.clock)
    NOISE_LEFT[0] = 0.0 if args.quick else args.noise_budget
    wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 10.0)
    args.budget = Budget(1, 2, 3, 0.5, wait) if args.quick else Budget(2, 3, 25, 8.0, wait, args.retries)
    facts = machine_facts()
    print(
        f"machine: torch {facts['torch']}, timm {facts['timm']}, python {facts['python']}, CPU {facts['cpu']} "
        f"({facts['cores']} cores), capability {facts['cpu_capability']}, torch threads {facts['threads']}, "
        f"load avg {facts['loadavg'][0]:.2f}"
    )
    print(f"visionattn commit: {facts['commit']}; clock: {args.clock}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    start = time.perf_counter()
    runners = {"window": bench_window, "halo": bench_halo, "nbhd": bench_nbhd, "flops": bench_flops,
               "memory": bench_memory}
    for name in SECTIONS:
        if name in only:
            t0 = time.perf_counter()
            runners[name](args, dtypes)
            print(f"  [{name}: {time.perf_counter() - t0:.0f} s]")
    facts["loadavg_end"] = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load avg at end {facts['loadavg_end'][0]:.2f}")
    if OTHERS:
        print(f"other processes used {statistics.median(OTHERS):.0f}% of the machine's CPU during measurements "
              f"(median; max {max(OTHERS):.0f}%): ratios are side by side, absolute times are only as clean as that")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": facts, "argv": sys.argv[1:], "results": RESULTS}, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
