"""Experiment: self-attention as a data-dependent convolution (the tutorial's slide; Cordonnier et al., 2020).

Claim: multi-head self-attention with relative positions can express any convolution. With one head per kernel
offset (9 for 3×3), each head attends to a single offset, its value projection carries the input, and the output
projection applies that offset's kernel slice ``W[:, :, dy, dx]`` and sums the heads.

Two ways this module tests it:

* **Construction** (:func:`build_conv_attention`): the weights are set by hand (large relative bias, or the
  quadratic relative-logits encoding of Cordonnier et al.) and the layer reproduces ``conv2d`` exactly.
* **Fitting** (:func:`run_trial`): a randomly initialised ``Attention(dim, heads, Neighborhood(3, border="pad"),
  position=...)`` is trained with Adam on the relative MSE to a fixed random 3×3 convolution's outputs.

What training finds (``experiments/conv_as_attention.yaml``): not the one-hot construction. Position-only
attention makes the layer the convolution ``K[Δ] = Σ_h A[h, Δ] P_h V_h`` (:func:`effective_kernel`), so an exact
fit needs only an invertible ``(9 heads × 9 offsets)`` matrix ``A`` of soft per-head maps, and the projections
solve the linear system. Fewer heads are limited by :func:`position_only_bound`.

Borders. ``conv2d(padding=1)`` reads zeros beyond the image. ``Neighborhood(border="pad")`` instead *masks* the
keys beyond the grid and renormalises the softmax over the keys that remain, which is not the same thing. So the
layer runs on the **zero-padded token grid** ``(H+2, W+2)`` (a ring of zero tokens, exactly the pixels the
convolution pads with) and its output is cropped back to ``(H, W)``: every image pixel then has all 9 offsets,
and the comparison covers the whole image, borders included.

Shapes: images ``(B, C, H, W)`` (conv layout); tokens ``(B, H+2, W+2, C)`` (channels-last); kernel
``(C, C, 3, 3)``; per-head offset attention ``(heads, 3, 3)`` indexed by ``Δ + 1`` with ``Δ = key − query``,
the same indexing as the kernel (``conv2d`` is a cross-correlation: ``y[i] = Σ_Δ W[Δ+1] x[i+Δ]``).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layers.attention import Attention
from ..ops import AttentionCall, Neighborhood, attention_probs, observe_attention

DEFAULTS: dict = {
    "channels": 8,  # C: conv channels in = out = the layer's dim
    "heads": 9,
    "head_dim": None,  # None: = channels (each head can carry the whole input, as in the construction)
    "position": "rel_bias",  # 'rel_bias', 'rel_logits' or 'none' (control: cannot tell offsets apart)
    "size": 12,  # image side H = W
    "batch": 16,
    "steps": 800,
    "lr": 0.02,
    "input": "gaussian",  # 'gaussian' (i.i.d. N(0, 1) pixels) or 'natural' (skimage.data RGB crops, channels 3)
    "eval_batch": 64,
    "backend": "auto",
}
POSITIONS = ("rel_bias", "rel_logits", "none")
INPUTS = ("gaussian", "natural")
NATURAL_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
METRICS = (
    "relative_mse_initial",
    "relative_mse_final",
    "kernel_relative_error",
    "attention_peak",
    "offsets_covered",
    "attention_rank",
    "attention_sigma_min",
    "attention_query_std",
    "position_only_bound",
    "train_seconds",
)


def check_params(params: dict) -> dict:
    """``params`` over :data:`DEFAULTS`, validated; a bad key or value raises ``ValueError``/``TypeError``."""
    if not isinstance(params, dict):
        raise TypeError(f"conv_fit params must be a dict, got {type(params).__name__}")
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"conv_fit params: unknown keys {unknown}; expected a subset of {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["head_dim"] is None:
        p["head_dim"] = p["channels"]
    for key in ("channels", "heads", "head_dim", "size", "batch", "steps", "eval_batch"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"conv_fit params: {key} must be a positive int, got {p[key]!r}")
    if isinstance(p["lr"], bool) or not isinstance(p["lr"], (int, float)) or not p["lr"] > 0:
        raise ValueError(f"conv_fit params: lr must be a positive number, got {p['lr']!r}")
    if p["position"] not in POSITIONS:
        raise ValueError(f"conv_fit params: position must be one of {POSITIONS}, got {p['position']!r}")
    if p["input"] not in INPUTS:
        raise ValueError(f"conv_fit params: input must be one of {INPUTS}, got {p['input']!r}")
    if p["input"] == "natural" and p["channels"] != 3:
        raise ValueError(f"conv_fit params: input='natural' (RGB crops) needs channels=3, got {p['channels']}")
    return p


# --- data -------------------------------------------------------------------------------------------------------
def random_kernel(channels: int, generator: torch.Generator) -> Tensor:
    """A fixed random 3×3 kernel ``(C, C, 3, 3)``, std ``1/sqrt(9C)`` (unit-variance output on unit-variance
    input)."""
    return torch.randn(channels, channels, 3, 3, generator=generator) / math.sqrt(9 * channels)


@functools.lru_cache(maxsize=1)
def _natural_pool() -> tuple[Tensor, ...]:
    """The skimage.data RGB images, each standardised per channel: ``(3, H_i, W_i)`` float tensors (loaded once)."""
    import skimage.data

    pool = []
    for name in NATURAL_IMAGES:
        img = torch.from_numpy(getattr(skimage.data, name)()).float().permute(2, 0, 1)  # (3, H, W)
        mean, std = img.mean((1, 2), keepdim=True), img.std((1, 2), keepdim=True)
        pool.append((img - mean) / std)
    return tuple(pool)


def sample_images(kind: str, batch: int, channels: int, size: int, generator: torch.Generator) -> Tensor:
    """Input images ``(batch, channels, size, size)``: i.i.d. Gaussian pixels, or random ``size``×``size`` crops
    of standardised skimage.data RGB photographs (``kind='natural'``, channels 3)."""
    if kind == "gaussian":
        return torch.randn(batch, channels, size, size, generator=generator)
    if kind != "natural":
        raise ValueError(f"sample_images: kind must be one of {INPUTS}, got {kind!r}")
    if channels != 3:
        raise ValueError(f"sample_images: natural crops are RGB, need channels=3, got {channels}")
    pool = _natural_pool()
    crops = []
    for _ in range(batch):
        img = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        top = int(torch.randint(img.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(img.shape[2] - size + 1, (1,), generator=generator))
        crops.append(img[:, top : top + size, left : left + size])
    return torch.stack(crops)  # (batch, 3, size, size)


def pad_tokens(x: Tensor) -> Tensor:
    """Images ``(B, C, H, W)`` → channels-last tokens ``(B, H+2, W+2, C)`` with a ring of zero tokens (the
    pixels ``conv2d(padding=1)`` reads)."""
    return F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)


def apply_layer(layer: Attention, x: Tensor) -> Tensor:
    """The attention layer as an image operator: ``(B, C, H, W)`` → ``(B, C, H, W)`` (runs on the zero-padded token
    grid, crops the ring)."""
    return layer(pad_tokens(x))[:, 1:-1, 1:-1].permute(0, 3, 1, 2)


def relative_mse(pred: Tensor, target: Tensor) -> Tensor:
    """``‖target − pred‖² / ‖target‖²`` (a scalar tensor; 1 for predicting zeros)."""
    return (pred - target).pow(2).sum() / target.pow(2).sum()


# --- the construction -------------------------------------------------------------------------------------------
OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # head h of the construction attends OFFSETS[h]


@torch.no_grad()
def build_conv_attention(
    weight: Tensor,
    bias: Tensor | None = None,
    position: str = "rel_bias",
    margin: float = 40.0,
    head_dim: int | None = None,
    backend: str = "auto",
) -> Attention:
    """An ``Attention(C, 9, Neighborhood(3, border="pad"))`` whose weights are set by hand so that
    ``apply_layer(layer, x) == conv2d(x, weight, bias, padding=1)`` (Cordonnier et al., 2020, Theorem 1).

    weight: ``(C, C, 3, 3)``; bias: ``(C,)`` or None. Head ``h`` attends to offset ``OFFSETS[h]``:

    * ``position='rel_bias'``: the bias table is 0 at the head's offset and ``-margin`` elsewhere;
    * ``position='rel_logits'``: the query is the constant ``q_h = margin · (2dy_h, 1, 2dx_h, 1, 0, …)`` (query
      weights 0, query bias set) and the shared per-axis tables are ``r_y[dy] = (dy, −dy², 0, 0, …)``,
      ``r_x[dx] = (0, 0, dx, −dx², …)``, so the logit is ``−margin · ‖Δ − Δ_h‖² + const``: the quadratic
      encoding of the paper; needs ``head_dim ≥ 4``.

    Keys are 0, so ``q·k`` adds nothing. Value projection: the identity into the head's first ``C`` channels.
    Output projection: head ``h``'s block is ``W[:, :, dy_h+1, dx_h+1]``. Off-offset weights are below
    ``8·exp(−margin)``.
    """
    if not isinstance(weight, Tensor) or weight.ndim != 4 or weight.shape[2:] != (3, 3):
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"build_conv_attention: weight must be (C_out, C_in, 3, 3), got {got}")
    c_out, c_in = weight.shape[:2]
    if c_out != c_in:
        raise ValueError(f"build_conv_attention: the layer maps dim → dim, needs C_out == C_in, got {c_out} vs {c_in}")
    if position not in ("rel_bias", "rel_logits"):
        raise ValueError(f"build_conv_attention: position must be 'rel_bias' or 'rel_logits', got {position!r}")
    c = c_in
    head_dim = head_dim or (max(c, 4) if position == "rel_logits" else c)
    if head_dim < c or (position == "rel_logits" and head_dim < 4):
        need = max(c, 4) if position == "rel_logits" else c
        raise ValueError(f"build_conv_attention: head_dim must be ≥ {need} for {position} with C={c}, got {head_dim}")
    heads = len(OFFSETS)
    layer = Attention(c, heads, Neighborhood(3, border="pad"), position=position, head_dim=head_dim, backend=backend)
    layer = layer.to(weight.dtype)
    inner = heads * head_dim
    qkv_w, qkv_b = layer.qkv.weight, layer.qkv.bias  # (3·inner, C), (3·inner,): rows [q | k | v], heads-major
    qkv_w.zero_()
    qkv_b.zero_()
    layer.proj.weight.zero_()
    for h, (dy, dx) in enumerate(OFFSETS):
        v_rows = slice(2 * inner + h * head_dim, 2 * inner + h * head_dim + c)
        qkv_w[v_rows] = torch.eye(c, dtype=weight.dtype)  # v_h = x (first C channels)
        layer.proj.weight[:, h * head_dim : h * head_dim + c] = weight[:, :, dy + 1, dx + 1]
        if position == "rel_logits":
            q_rows = slice(h * head_dim, h * head_dim + 4)
            qkv_b[q_rows] = margin * torch.tensor([2.0 * dy, 1.0, 2.0 * dx, 1.0], dtype=weight.dtype)
    layer.proj.bias.copy_(bias if bias is not None else torch.zeros(c, dtype=weight.dtype))
    if position == "rel_bias":
        table = layer.position.table  # (heads, 3, 3)
        table.fill_(-margin)
        for h, (dy, dx) in enumerate(OFFSETS):
            table[h, dy + 1, dx + 1] = 0.0
    else:
        ty, tx = layer.position.tables  # (3, head_dim) each, rows Δ = -1, 0, 1
        ty.zero_()
        tx.zero_()
        for i, d in enumerate((-1.0, 0.0, 1.0)):
            ty[i, 0], ty[i, 1] = d, -d * d
            tx[i, 2], tx[i, 3] = d, -d * d
    return layer


# --- reading the layer ------------------------------------------------------------------------------------------
@torch.no_grad()
def offset_attention(layer: Attention, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-head attention over the 3×3 offsets, captured from the layer's own operator call on images
    ``x (B, C, H, W)``: ``(mean, std)``, each ``(heads, 3, 3)``, the mean and the standard deviation over all
    image pixels (queries) and images of the weight a query puts on the key at offset ``Δ`` (index ``Δ + 1``).
    ``std`` measures how much the attention depends on the content rather than on the position alone."""
    calls: list[AttentionCall] = []
    with observe_attention(lambda call, out: calls.append(call)):
        apply_layer(layer, x)
    if len(calls) != 1:
        raise RuntimeError(f"offset_attention: expected one attention call from the layer, saw {len(calls)}")
    weights = attention_probs(calls[0])  # (B, h, Nq, Nk) on the padded (H+2, W+2) grid: the reference's weights
    hp, wp = calls[0].kv_grid
    ii, jj = torch.meshgrid(torch.arange(1, hp - 1), torch.arange(1, wp - 1), indexing="ij")
    queries = (ii * wp + jj).flatten()  # (H·W,) image pixels on the padded grid
    shifts = torch.tensor([dy * wp + dx for dy, dx in OFFSETS])  # (9,) flat key offset
    picked = weights[:, :, queries[:, None], queries[:, None] + shifts[None]]  # (B, h, H·W, 9)
    mean = picked.mean((0, 2)).reshape(-1, 3, 3)
    std = picked.std((0, 2)).reshape(-1, 3, 3)
    return mean, std


@torch.no_grad()
def effective_kernel(layer: Attention, attn: Tensor) -> Tensor:
    """The convolution the layer applies when each head's attention is the position-only map ``attn
    (heads, 3, 3)``: ``K[:, :, Δ+1] = Σ_h attn[h, Δ+1] · P_h V_h`` → ``(C, C, 3, 3)``, with ``V_h`` the head's value
    rows of ``qkv`` and ``P_h`` its column block of ``proj`` (biases ignored)."""
    h, d, c = layer.heads, layer.head_dim, layer.dim
    inner = h * d
    v = layer.qkv.weight[2 * inner :].reshape(h, d, c)  # (h, d, C_in)
    p = layer.proj.weight.reshape(c, h, d).permute(1, 0, 2)  # (h, C_out, d)
    per_head = p @ v  # (h, C_out, C_in)
    return torch.einsum("hyx,hoi->oiyx", attn.to(per_head.dtype), per_head)


def position_only_bound(kernel: Tensor, heads: int, position: str = "rel_bias") -> float:
    """The least relative error ``‖K − W‖²/‖W‖²`` by which a layer of *position-only* attention (weights that
    depend on the offset, not on the content) can miss the 3×3 kernel ``W (C_out, C_in, 3, 3)``.

    Such a layer is the convolution ``K[Δ] = Σ_h A[h, Δ] M_h`` (:func:`effective_kernel`), so the ``(9, C·C)``
    matrix of its kernel slices has rank ≤ ``heads``; by Eckart–Young none is closer than the energy of the
    trailing singular values of W's: ``Σ_{i ≥ heads} σ_i² / Σ σ_i²`` (0 for ≥ 9 heads). With ``position='none'``
    position-only attention is uniform over the window, ``K[Δ] = M/9``, and the bound is
    ``1 − ‖Σ_Δ W[Δ]‖² / (9 ‖W‖²)``. On i.i.d. inputs the relative output MSE equals the kernel error away from
    the border, so a trained layer that goes below the bound uses content-dependent attention."""
    slices = kernel.permute(2, 3, 0, 1).reshape(9, -1).double()  # (9 offsets, C_out·C_in)
    if position == "none":
        return float(1 - slices.sum(0).pow(2).sum() / (9 * slices.pow(2).sum()))
    sigma2 = torch.linalg.svdvals(slices).pow(2)
    return float(sigma2[min(heads, 9) :].sum() / sigma2.sum())


# --- the trial --------------------------------------------------------------------------------------------------
def run_trial(params: dict, seed: int, out_dir: pathlib.Path) -> dict[str, float]:
    """Fit ``Attention(C, heads, Neighborhood(3, border="pad"), position)`` to a fixed random 3×3 conv.

    ``params``: keys of :data:`DEFAULTS`. The seed fixes the kernel, the data stream and the initialisation.
    Each Adam step (cosine schedule) draws a fresh batch, so the fit is to the operator, not to a sample.
    Writes into ``out_dir``: ``conv_fit.png`` (loss curve, true vs effective kernel, per-head offset attention),
    ``loss_curve.csv`` (step, train relative MSE), ``attention.json`` (per-head maps, kernel, metrics).

    Returns (all floats): ``relative_mse_initial`` / ``relative_mse_final`` (held-out batch, before / after
    training), ``kernel_relative_error`` (``‖K_eff − W‖²/‖W‖²``, :func:`effective_kernel` of the mean attention),
    ``attention_peak`` (mean over heads of the largest mean offset weight: 1 = each head picks one offset),
    ``offsets_covered`` (distinct offsets among heads with a peak > 0.5), ``attention_rank`` (numerical rank of the
    ``(heads, 9)`` matrix of mean attention maps, singular values > 1% of the largest) and ``attention_sigma_min``
    (its 9th singular value, 0 with fewer than 9 heads): the layer can express every 3×3 kernel through
    position-only attention exactly when this matrix has rank 9 (see :func:`effective_kernel`; one-hot heads are
    the special case of a permutation matrix, σ_min = 1), ``attention_query_std`` (mean over
    heads and offsets of the weight's std over queries: 0 = position-only attention), ``position_only_bound`` (the
    least relative MSE position-only attention with this many heads can reach, :func:`position_only_bound`),
    ``train_seconds``.
    """
    p = check_params(params)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(int(seed))
    kernel = random_kernel(p["channels"], gen)
    torch.manual_seed(int(seed))  # layer initialisation
    layer = Attention(
        p["channels"],
        p["heads"],
        Neighborhood(3, border="pad"),
        position=p["position"],
        head_dim=p["head_dim"],
        backend=p["backend"],
    )
    eval_gen = torch.Generator().manual_seed(10_000 + int(seed))
    x_eval = sample_images(p["input"], p["eval_batch"], p["channels"], p["size"], eval_gen)
    y_eval = F.conv2d(x_eval, kernel, padding=1)

    def evaluate() -> float:
        with torch.no_grad():
            return float(relative_mse(apply_layer(layer, x_eval), y_eval))

    initial = evaluate()
    opt = torch.optim.Adam(layer.parameters(), lr=p["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, p["steps"])
    curve = []
    start = time.perf_counter()
    for _ in range(p["steps"]):
        x = sample_images(p["input"], p["batch"], p["channels"], p["size"], gen)
        loss = relative_mse(apply_layer(layer, x), F.conv2d(x, kernel, padding=1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        curve.append(float(loss.detach()))
    train_seconds = time.perf_counter() - start
    final = evaluate()

    mean, std = offset_attention(layer, x_eval)
    k_eff = effective_kernel(layer, mean)
    peaks, where = mean.flatten(1).max(1)
    sigma = torch.linalg.svdvals(mean.flatten(1).double())  # (min(heads, 9),) descending
    metrics = {
        "relative_mse_initial": initial,
        "relative_mse_final": final,
        "kernel_relative_error": float(relative_mse(k_eff, kernel)),
        "attention_peak": float(peaks.mean()),
        "offsets_covered": float(len(set(where[peaks > 0.5].tolist()))),
        "attention_rank": float((sigma > 0.01 * sigma[0]).sum()),
        "attention_sigma_min": float(sigma[8]) if len(sigma) >= 9 else 0.0,
        "attention_query_std": float(std.mean()),
        "position_only_bound": position_only_bound(kernel, p["heads"], p["position"]),
        "train_seconds": train_seconds,
    }
    with open(out_dir / "loss_curve.csv", "w") as f:
        f.write("step,train_relative_mse\n")
        f.writelines(f"{i},{v:.6g}\n" for i, v in enumerate(curve))
    record = {"params": p, "seed": int(seed), "metrics": metrics, "offsets": "[dy+1][dx+1], Δ = key − query"}
    record |= {"attention_mean": mean.tolist(), "attention_std": std.tolist(), "kernel": kernel.tolist()}
    (out_dir / "attention.json").write_text(json.dumps(record, indent=1))
    plot_fit(out_dir / "conv_fit.png", curve, mean, kernel, k_eff, p, metrics)
    return metrics


def plot_fit(
    path: pathlib.Path, curve: list[float], attn: Tensor, kernel: Tensor, k_eff: Tensor, p: dict, metrics: dict
) -> None:
    """One PNG: train loss curve; the true kernel and the layer's effective kernel tiled as ``(C_out·3, C_in·3)``;
    the kernel's per-offset norm ``‖W[:, :, Δ+1]‖`` next to each head's mean 3×3 offset attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = kernel.shape[0]
    heads = attn.shape[0]
    fig = plt.figure(figsize=(max(12, 1.6 * (heads + 1)), 6.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.7, 1])
    ax_loss, ax_true, ax_eff = top.subplots(1, 3, gridspec_kw={"width_ratios": [1.6, 1, 1]})
    ax_loss.semilogy(curve, lw=1, label="train (fresh batch each step)")
    if metrics["position_only_bound"] > 0:
        ax_loss.axhline(metrics["position_only_bound"], color="C3", ls="--", lw=1, label="position-only bound")
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_loss.set(xlabel="Adam step", ylabel="train relative MSE", title="fit to a fixed random 3×3 conv")
    ax_loss.grid(True, which="both", alpha=0.3)
    lim = float(kernel.abs().max())
    for ax, k, title in ((ax_true, kernel, "true kernel W"), (ax_eff, k_eff, "effective kernel Σ_h a_h(Δ) P_h V_h")):
        tiled = k.permute(0, 2, 1, 3).reshape(c * 3, c * 3)  # (C_out·3, C_in·3): block (o, i) is W[o, i]
        im = ax.imshow(tiled.detach().cpu().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        for t in range(1, c):
            ax.axhline(3 * t - 0.5, color="k", lw=0.3)
            ax.axvline(3 * t - 0.5, color="k", lw=0.3)
        ax.set(title=title, xlabel="input channel × dx", ylabel="output channel × dy", xticks=[], yticks=[])
    top.colorbar(im, ax=[ax_true, ax_eff], shrink=0.8)
    top.suptitle(
        f"{p['heads']} heads, position={p['position']}, C={c}, input={p['input']}: relative MSE "
        f"{metrics['relative_mse_initial']:.3g} → {metrics['relative_mse_final']:.2e}, "
        f"kernel error {metrics['kernel_relative_error']:.2e}"
    )
    axes = bottom.subplots(1, heads + 1, squeeze=False)[0]
    norm = kernel.pow(2).sum((0, 1)).sqrt()  # (3, 3)
    panels = [(norm / norm.max(), "‖W[:,:,Δ]‖ (scaled)", "Greys")]
    panels += [(attn[h], f"head {h}", "viridis") for h in range(heads)]
    for ax, (grid, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(grid.detach().cpu().numpy(), cmap=cmap, vmin=0, vmax=1)
        for (i, j), value in zip(((i, j) for i in range(3) for j in range(3)), grid.flatten().tolist(), strict=True):
            dark = value > 0.5 if cmap == "Greys" else value < 0.6
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
        ax.set(title=title, xticks=range(3), yticks=range(3), xticklabels=[-1, 0, 1], yticklabels=[-1, 0, 1])
        ax.tick_params(labelsize=7)
    bottom.suptitle("mean attention over the 3×3 offsets Δ = key − query (rows dy, columns dx), per head")
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = [
    "DEFAULTS",
    "METRICS",
    "OFFSETS",
    "apply_layer",
    "build_conv_attention",
    "check_params",
    "effective_kernel",
    "offset_attention",
    "pad_tokens",
    "position_only_bound",
    "random_kernel",
    "relative_mse",
    "run_trial",
    "sample_images",
]
