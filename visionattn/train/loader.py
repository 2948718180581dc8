"""Data loaders whose randomness does not depend on who loads what: augmentation seeded per (seed, epoch, sample).

Transforms draw from the global Python, numpy and torch RNGs (torchvision v2: torch; timm RandAugment: Python and
numpy). :class:`SeededItems` computes each item with those three RNGs seeded from ``(seed, epoch, index)`` and puts
the caller's states back afterwards (once per batch: saving numpy's state is the expensive part). So an image's
augmentation is the same whichever worker, rank or resumed process loads it: a mid-epoch resume is bit-exact with
any ``num_workers``, a 2-rank run augments exactly as a 1-rank run with the same global batch, and the training
loop's own RNG streams (dropout, stochastic depth, Mixup) are not disturbed by loading in the main process.

The epoch travels with each index (:class:`EpochTagged` yields ``(epoch, index)``), so persistent workers need no
per-epoch update.
"""

from __future__ import annotations

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["SeededItems", "EpochTagged", "make_loader", "item_seeds"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def item_seeds(seed: int, epoch: int, index: int) -> tuple[int, int, int]:
    """Well-mixed 32-bit (python, numpy) and 63-bit (torch) seeds of one item (splitmix64, platform-independent)."""
    h = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) ^ (index & _MASK64))
    h2 = _splitmix64(h)
    return h & 0xFFFFFFFF, h >> 32, h2 >> 1


class EpochTagged(Sampler):
    """Yields ``(epoch, index)`` for each index of ``sampler``; set :attr:`epoch` before iterating."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self.epoch = 0

    def __iter__(self):
        epoch = self.epoch
        for index in self.sampler:
            yield epoch, index

    def __len__(self) -> int:
        return len(self.sampler)


class SeededItems(Dataset):
    """``dataset[index]`` computed under RNG states derived from ``(seed, epoch, index)``; keys are
    ``(epoch, index)`` pairs (from :class:`EpochTagged`) or plain indices (epoch 0)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # .targets, .classes, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _load(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        py_seed, np_seed, torch_seed = item_seeds(self.seed, int(epoch), int(index))
        random.seed(py_seed)
        np.random.seed(np_seed)
        torch.default_generator.manual_seed(torch_seed)  # CPU only; CUDA streams untouched
        return self.dataset[int(index)]

    def __getitems__(self, keys: list) -> list:
        """A batch (the DataLoader's fetcher calls this): the caller's RNG states are saved and restored once."""
        py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return [self._load(key) for key in keys]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]


def _worker_init(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: only the main process handles it (finish the step, checkpoint)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: Dataset, sampler, batch_size: int, num_workers: int, drop_last: bool,
                pin_memory: bool = False, collate=None) -> DataLoader:
    """A DataLoader over ``sampler`` batching with ``collate`` (None: ``default_collate``) and its own generator, so
    creating its iterator does not draw from (and shift) the global torch RNG; workers (if any) are persistent and
    ignore SIGINT."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, drop_last=drop_last,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(0), collate_fn=collate,
                      persistent_workers=num_workers > 0, worker_init_fn=_worker_init if num_workers else None)
