"""Collectives every layer may use: where this process sits in a job, and reductions that are the identity in a
world of one.

Tasks (a metric summed over evaluation shards, DETR's box count, CLIP's negatives from every rank) and the trainer
use these; setting the job up and wrapping models (torchrun, DDP, FSDP2) is :mod:`visionattn.train.distributed`.
Every function here must be called by every rank, the same number of times, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "LOCAL",
    "all_gather_with_grad",
    "all_reduce_any",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. ``world_size == 1`` means no process group exists."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when a process group is in use (world size > 1)."""
        return self.world_size > 1


LOCAL = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)
"""A world of one on the CPU (for evaluation and tests outside a training job)."""


def _reduce(t: Tensor, op: str, info: DistInfo) -> Tensor:
    """In-place all-reduce of ``t`` with ``op`` ("sum" or "max"); the identity in a world of one."""
    if info.distributed:
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op.upper()))
    return t


def _reduce_device(info: DistInfo) -> torch.device:
    return info.device if info.distributed and dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_any(flag: bool | Tensor, info: DistInfo) -> bool:
    """True if any rank's ``flag`` is True; every rank gets the same answer (e.g. "skip this step: a loss is not
    finite somewhere"). ``flag`` may be a 0-d bool tensor on any device (read once, here)."""
    if isinstance(flag, Tensor):
        t = flag.detach().reshape(1).to(device=_reduce_device(info), dtype=torch.int32)
    else:
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_reduce_device(info))
    return bool(_reduce(t, "max", info).item())


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of ``value`` over the ranks (fp64), the same on every rank."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=_reduce_device(info))
    return float(_reduce(t, "sum", info).item()) / info.world_size


def all_reduce_sum(value, info: DistInfo):
    """Sum over the ranks of a number (returned as float) or a tensor (returned as a new tensor of the same dtype and
    device), e.g. correct/total counts or a confusion matrix from uneven evaluation shards."""
    if isinstance(value, Tensor):
        if not info.distributed:
            return value.detach().clone()
        t = value.detach().clone().to(_reduce_device(info))
        return _reduce(t, "sum", info).to(value.device)
    if not info.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_reduce_device(info))
    return float(_reduce(t, "sum", info).item())


def all_gather_with_grad(t: Tensor, info: DistInfo) -> Tensor:
    """``(B, ...)`` on every rank → ``(world · B, ...)`` in rank order, the same on every rank; gradients flow back
    to each rank's own slice (``torch.distributed.nn.functional.all_gather``). Equal ``B`` on every rank."""
    if not info.distributed:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), dim=0)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank ``src``'s picklable ``obj`` on every rank (e.g. a run directory name chosen by rank 0)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a world of one)."""
    if info.distributed:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()
