"""Calling ``scaled_dot_product_attention`` on tiles within the limits of the fused kernels.

* **Batch limit.** CUDA launches one block row per batch entry on a grid axis limited to 65,535; the blocked backend's
  SDPA batch is ``B × tiles`` (a Swin-T stage-1 layer has 81 shifted windows per image, so a batch of 810 images
  passes it). :func:`sdpa` runs such calls in chunks of at most :data:`SDPA_MAX_BATCH` entries (a module constant:
  tests set it small to compare chunked and unchunked runs on CPU).
* **Mask layout.** The memory-efficient CUDA kernel wants the mask's rows 16-element aligned (else PyTorch pads a copy
  on every call, with a warning); the per-image copy the 4D kernels need anyway is made into an aligned buffer.
* **Learnable bias.** CUDA's memory-efficient kernel differentiates its additive mask, so a bias that requires grad
  stays fused on the devices in :data:`FUSED_BIAS_GRAD_DEVICES`; the CPU kernels give the mask no gradient, so there
  the blocked backend uses :func:`.biased_sdpa.biased_attention` instead.
* **Head widths.** Fused CUDA kernels need head widths that are multiples of 8 (16-bit) or 4 (float32), else SDPA
  takes its math path; :func:`fused_width` gives the width folded relative logits are padded to there (the CPU
  kernel takes any width, so on CPU nothing is padded).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SDPA_MAX_BATCH = 65_535  # CUDA's grid limit on the axis SDPA kernels put the batch on
FUSED_BIAS_GRAD_DEVICES = ("cuda",)  # device types whose fused SDPA kernel gives attn_mask a gradient
WIDTH_MULTIPLE = 8  # head widths the fused CUDA kernels take in every dtype (16-bit: 8, float32: 4)
WIDTH_PAD_DEVICES = ("cuda",)  # device types whose fused kernels need that multiple
MASK_ALIGN = 16  # elements: mask row alignment of the memory-efficient CUDA kernel
ALIGN_DEVICES = ("cuda",)  # device types whose masks are given aligned rows


def fused_bias_grad(device: torch.device) -> bool:
    """Whether SDPA on ``device`` keeps a fused kernel when its additive mask requires grad."""
    return device.type in FUSED_BIAS_GRAD_DEVICES


def fused_width(width: int, device: torch.device) -> int:
    """The head width fused SDPA kernels on ``device`` take for ``width``: the smallest multiple of
    :data:`WIDTH_MULTIPLE` ≥ ``width`` on :data:`WIDTH_PAD_DEVICES`, else ``width``."""
    if device.type not in WIDTH_PAD_DEVICES:
        return width
    return -(-width // WIDTH_MULTIPLE) * WIDTH_MULTIPLE


def batch_mask(mask: Tensor, b: int) -> Tensor:
    """A tile mask ``(1 | b, m, 1 | h, Tq, Tk)`` as SDPA's 4D ``(b · m, 1 | h, Tq, Tk)`` (one copy when the batch axis
    is broadcast and ``b > 1``: the 4D kernels cannot broadcast a per-tile mask over images). On
    :data:`ALIGN_DEVICES`, rows not :data:`MASK_ALIGN`-aligned are copied once into an aligned buffer (the copy the
    broadcast needs anyway), so SDPA does not pad yet another copy of the mask (and of its gradient)."""
    m, tail = mask.shape[1], mask.shape[2:]
    full = mask.expand(b, m, *tail)  # (b, m, 1|h, Tq, Tk)
    tk = tail[-1]
    if mask.device.type not in ALIGN_DEVICES or tk % MASK_ALIGN == 0:
        return full.reshape(b * m, *tail)
    buffer = mask.new_empty(b, m, *tail[:-1], -(-tk // MASK_ALIGN) * MASK_ALIGN)[..., :tk]  # aligned rows
    return buffer.copy_(full).reshape(b * m, *tail)  # a view: (b, m) merge in the contiguous buffer


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """``F.scaled_dot_product_attention`` on ``q (N, h, Tq, d)``, ``k (N, h, Tk, d)``, ``v (N, h, Tk, e)``, mask
    ``(N | 1, 1 | h, Tq, Tk)`` additive float or None → ``(N, h, Tq, e)``; in chunks of at most
    :data:`SDPA_MAX_BATCH` along ``N``."""
    n, limit = q.shape[0], SDPA_MAX_BATCH
    if n <= limit:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    outs = []
    for lo in range(0, n, limit):
        hi = min(lo + limit, n)
        part = None if mask is None else mask if mask.shape[0] == 1 else mask[lo:hi]
        outs.append(F.scaled_dot_product_attention(q[lo:hi], k[lo:hi], v[lo:hi], attn_mask=part, scale=scale))
    return torch.cat(outs)
