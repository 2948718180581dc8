"""The backbone contract every registered model follows (timm's habits), implemented once.

A backbone is ``stem → stages → final norm → head``. A family subclass provides:

* ``forward_stem(x (B, 3, H, W)) -> state`` — the state is whatever its stages pass along (channels-last
  tokens ``(B, H, W, C)`` for attention models, ``(B, C, H, W)`` maps for ResNets, ``(B, 1 + N, C)`` with a
  class token for ViT);
* ``self.stages``: an ``nn.ModuleList``; each maps state → state;
* ``stage_map(state, i) -> (B, C_i, H_i, W_i)``: the feature map after stage ``i`` (for intermediates);
* ``forward_norm(state) -> features`` and ``forward_head(features, pre_logits=False)``;
* ``self.feature_info``: one ``FeatureInfo`` per stage; ``self.num_classes``; ``reset_classifier``.

This base adds ``forward``, ``forward_features``, ``forward_intermediates`` and gradient checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def drop_path_rates(rate: float, count: int) -> list[float]:
    """Stochastic depth rising linearly from 0 to ``rate`` over ``count`` blocks (plain floats: meta-safe)."""
    return [rate * i / max(count - 1, 1) for i in range(count)]


def init_linear(module: nn.Module) -> None:
    """timm's transformer init, for ``model.apply``: trunc-normal(0.02) Linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone exposes: channels, total stride w.r.t. the image, and the stage name."""

    num_chs: int
    reduction: int
    module: str

    def __getitem__(self, key):  # timm-style dict access: info["num_chs"]
        return getattr(self, key)


class Backbone(nn.Module):
    feature_info: list[FeatureInfo]
    num_classes: int
    stages: nn.ModuleList

    def __init__(self):
        super().__init__()
        self.grad_checkpointing = False

    # -- to be provided by the family ----------------------------------------------------------------
    def forward_stem(self, x: Tensor):
        raise NotImplementedError

    def stage_map(self, state, index: int) -> Tensor:
        raise NotImplementedError

    def forward_norm(self, state):
        raise NotImplementedError

    def forward_head(self, features, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in backward instead of storing its activations (training only)."""
        self.grad_checkpointing = enable

    def _run_stage(self, stage: nn.Module, state):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, state, use_reentrant=False)
        return stage(state)

    def _check_image(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_chans:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects images (B, {self.in_chans}, H, W), got {got}")

    @property
    def in_chans(self) -> int:
        return 3

    def forward_features(self, x: Tensor):
        """Images ``(B, 3, H, W)`` → the final normalised features the head consumes."""
        self._check_image(x)
        state = self.forward_stem(x)
        for stage in self.stages:
            state = self._run_stage(stage, state)
        return self.forward_norm(state)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` → logits ``(B, num_classes)`` (pooled features if ``num_classes == 0``)."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None) -> list[Tensor]:
        """Feature maps ``(B, C_i, H_i, W_i)`` after the selected stages (default: all), matching
        ``feature_info[i]`` in channels and ``H / reduction``. An int ``n`` selects the last ``n`` stages."""
        self._check_image(x)
        count = len(self.stages)
        if indices is None:
            wanted = list(range(count))
        elif isinstance(indices, int):
            wanted = list(range(count - indices, count))
        else:
            wanted = [i % count if -count <= i < count else i for i in indices]
        bad = [i for i in wanted if not 0 <= i < count]
        if bad:
            raise ValueError(f"{type(self).__name__} has {count} stages (indices 0..{count - 1}), got {bad}")
        state = self.forward_stem(x)
        maps = []
        for i, stage in enumerate(self.stages[: max(wanted) + 1]):
            state = self._run_stage(stage, state)
            if i in wanted:
                maps.append(self.stage_map(state, i))
        return maps
