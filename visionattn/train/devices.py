"""Device-dependent defaults of a run, resolved once and printed: precision, loader workers, CPU threads, TF32.

Global switches (TF32, thread counts) are scoped to the run: set on entry, restored on exit.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["resolve_precision", "resolve_workers", "set_threads", "tf32_scope"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``run.precision`` for ``device``: ``auto`` is bf16 on a CUDA device that supports it, fp32 otherwise;
    fp16 (GradScaler) needs CUDA."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"run.precision: fp16 needs a CUDA device (GradScaler), got {device}; use bf16")
    return precision


def resolve_workers(num_workers: int | None, device: torch.device) -> int:
    """``run.num_workers``; None (auto) is 1 on CPU, where the cores compute, and on CUDA the CPU cores left per
    process on this node (``LOCAL_WORLD_SIZE`` processes, one core each kept for the training loop), at most 8."""
    if num_workers is not None:
        return int(num_workers)
    if device.type != "cuda":
        return 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // local - 1))


def set_threads(threads: int | None, num_workers: int, device: torch.device) -> None:
    """``run.threads``, or by default (CPU training, OMP_NUM_THREADS unset) leave a core to each loader worker:
    on a busy machine, more compute threads than free cores makes every parallel op wait for a time slice."""
    if threads:
        torch.set_num_threads(threads)
    elif device.type == "cpu" and num_workers and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) - num_workers)))


@contextlib.contextmanager
def tf32_scope(enabled: bool):
    """Allow TF32 matmuls and cuDNN convolutions inside the block when ``enabled``; the previous settings come
    back on exit. A no-op when not enabled."""
    if not enabled:
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
