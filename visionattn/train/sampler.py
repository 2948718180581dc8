"""A data-parallel sampler that can stop and resume in the middle of an epoch.

Each epoch draws one permutation of the dataset from ``(seed, epoch)`` alone (its own generator; the global RNG is
not touched), pads it by repeating its head (or drops its tail) to a multiple of the world size (``even=True``, the
default), and gives rank ``r`` the positions ``r, r + W, r + 2W, ...`` — the same layout as
:class:`torch.utils.data.DistributedSampler`. So with
``W`` ranks of batch ``b`` each, step ``s`` of the job sees exactly the samples at positions ``[s·W·b, (s+1)·W·b)``
of the permutation: the same set as one process with batch ``W·b`` (the basis of the DDP-equivalence test).

Resuming: :meth:`~ResumableDistributedSampler.state_dict` records the epoch and how many samples of its shard this
rank has handed out; after :meth:`~ResumableDistributedSampler.load_state_dict` the next iteration of that epoch
skips exactly those. The ranks move in lockstep (equal shards, equal batches), so rank 0's state, saved in the
checkpoint, is valid for every rank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from ..comm import DistInfo

__all__ = ["ResumableDistributedSampler", "make_sampler"]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class ResumableDistributedSampler(Sampler[int]):
    """Deterministic, sharded, resumable sampler of dataset indices (use with ``DataLoader(sampler=...)``).

    dataset: anything with ``len()`` (or the length itself).
    num_replicas, rank: the world size and this process's rank.
    shuffle: a fresh permutation per epoch from ``(seed, epoch)``; ``False`` keeps dataset order.
    batch_size: this rank's batch size, used by ``state_dict(batches_done=...)``.
    drop_last: drop the tail of the permutation instead of padding it to a multiple of the world size.
    even: ``True`` (the default) gives every rank the same number of samples by padding (repeating the head of the
        permutation) or dropping. The trainer uses it for training *and* evaluation: equal shards keep the ranks'
        collectives (DDP/FSDP) in step, and without shuffling the real samples of rank ``r``'s shard are its first
        ``len(range(r, n, W))``, so evaluation runs the repeated tail but does not count it (``evaluate(valid=)``).
        ``False`` gives every sample to exactly one rank, so shards may differ by one (only for loops whose model
        runs no collectives; sum the per-rank counts with ``all_reduce_sum``); it cannot be combined with
        ``drop_last``.

    ``len(sampler)`` is the full shard of an epoch (also on a resumed epoch, so schedules computed from
    ``len(loader)`` do not change); :attr:`remaining` is what the next iteration will yield.
    """

    def __init__(self, dataset: Sized | int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, batch_size: int = 1, drop_last: bool = False, even: bool = True):
        n = dataset if isinstance(dataset, int) and not isinstance(dataset, bool) else len(dataset)
        self.dataset_len = _check_int("dataset length", n, 1)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"rank: expected an integer in [0, {num_replicas}), got {rank!r}")
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.drop_last = bool(drop_last)
        self.even = bool(even)
        if not self.even and self.drop_last:
            raise ValueError("drop_last=True needs even=True (uneven shards neither pad nor drop)")
        if self.even:
            if self.drop_last:
                if n < num_replicas:
                    raise ValueError(f"drop_last with {num_replicas} ranks needs at least {num_replicas} samples, "
                                     f"got {n}")
                self.num_samples = n // num_replicas
            else:
                self.num_samples = math.ceil(n / num_replicas)
            self.total_size = self.num_samples * num_replicas
        else:
            self.num_samples = len(range(rank, n, num_replicas))
            self.total_size = n
        self.epoch = 0
        self._consumed = 0  # samples of this rank's shard handed out in self.epoch
        self._skip = 0  # where the next iteration starts (set by load_state_dict)

    # ----------------------------------------------------------------------------------------------- iteration
    def permutation(self, epoch: int | None = None) -> list[int]:
        """The epoch's whole (padded or truncated) permutation, before sharding: identical on every rank."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            indices = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            indices = list(range(self.dataset_len))
        if not self.even:
            return indices
        if self.drop_last:
            return indices[: self.total_size]
        pad = self.total_size - len(indices)
        while pad > 0:  # repeat the head (more than once only when the dataset is smaller than the world)
            indices += indices[:pad]
            pad = self.total_size - len(indices)
        return indices

    def shard(self, epoch: int | None = None) -> list[int]:
        """This rank's indices for the epoch, in the order they are yielded (ignoring any resume skip)."""
        return self.permutation(epoch)[self.rank: self.total_size: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        indices = self.shard()
        start = self._skip
        self._skip = 0  # a later iteration of the same epoch starts from the beginning again
        self._consumed = start
        for i in range(start, len(indices)):
            self._consumed = i + 1
            yield indices[i]

    def __len__(self) -> int:
        return self.num_samples

    @property
    def remaining(self) -> int:
        """Samples the next iteration will yield (less than ``len(self)`` right after a mid-epoch resume)."""
        return self.num_samples - self._skip

    @property
    def consumed(self) -> int:
        """Samples of this rank's shard handed out so far in the current epoch."""
        return self._consumed

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its permutation). A new epoch starts from its beginning; calling it with the epoch
        that :meth:`load_state_dict` restored keeps the resume position."""
        epoch = _check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self.epoch = epoch
            self._consumed = 0
            self._skip = 0

    # -------------------------------------------------------------------------------------------------- state
    def state_dict(self, batches_done: int | None = None) -> dict[str, int]:
        """``{"epoch", "consumed", "world_size"}``: the samples of this rank's shard consumed in the current epoch.

        By default "consumed" is what the sampler has handed to the DataLoader, which is exact with
        ``num_workers=0``. A DataLoader with workers pulls indices ahead (``prefetch_factor × num_workers``
        batches), so there pass ``batches_done``, the number of batches of this epoch the loop has finished
        (counting those before a resume): consumed is then ``batches_done × batch_size``.
        """
        consumed = self._consumed
        if batches_done is not None:
            consumed = min(_check_int("batches_done", batches_done, 0) * self.batch_size, self.num_samples)
        return {"epoch": self.epoch, "consumed": consumed, "world_size": self.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        """Restore the epoch and make the next iteration skip the consumed samples.

        A state saved with a different world size is converted through the global position in the permutation
        (``consumed × old_world``), exact when that divides by the new world size; otherwise up to
        ``world_size - 1`` samples are seen twice, with a warning.
        """
        if not isinstance(state, dict) or "epoch" not in state or "consumed" not in state:
            raise ValueError(f"sampler state: expected a dict with 'epoch' and 'consumed', got {state!r}")
        epoch = _check_int("sampler state 'epoch'", state["epoch"], 0)
        consumed = _check_int("sampler state 'consumed'", state["consumed"], 0)
        old_world = _check_int("sampler state 'world_size'", state.get("world_size", self.num_replicas), 1)
        if old_world != self.num_replicas:
            global_pos = consumed * old_world
            consumed = global_pos // self.num_replicas
            if global_pos % self.num_replicas:
                warnings.warn(f"resuming with {self.num_replicas} ranks from a state saved with {old_world}: "
                              f"position {global_pos} in epoch {epoch} does not divide evenly, so up to "
                              f"{self.num_replicas - 1} samples are repeated", stacklevel=2)
            consumed = min(consumed, self.num_samples)  # the padded tails differ between world sizes
        if consumed > self.num_samples:
            raise ValueError(f"sampler state 'consumed': expected <= {self.num_samples} (this rank's shard of "
                             f"{self.dataset_len} samples over {self.num_replicas} ranks), got {consumed}; "
                             f"was the state saved for another dataset?")
        self.epoch = epoch
        self._consumed = consumed
        self._skip = consumed

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.dataset_len}, rank={self.rank}/{self.num_replicas}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, consumed={self._consumed})")


def make_sampler(dataset: Sized, info: DistInfo, shuffle: bool, seed: int, batch_size: int,
                 drop_last: bool = False, even: bool = True) -> ResumableDistributedSampler:
    """The sampler for this rank of ``info``'s job (a world of one included): see
    :class:`ResumableDistributedSampler`. Training: ``shuffle=True`` (the trainer also drops the last partial
    shard); evaluation: ``shuffle=False`` with the default ``even=True``, counting only the first
    ``len(range(rank, len(dataset), world_size))`` samples of the shard (the rest repeat the head of the dataset)."""
    return ResumableDistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle,
                                       seed=seed, batch_size=batch_size, drop_last=drop_last, even=even)
