"""The backbone contract every registered model follows (timm's habits), implemented once.

A backbone is ``stem → stages → final norm → head``. A family subclass provides:

* ``input_kind``: what it takes (``"image"`` ``(B, C, H, W)``, ``"video"`` ``(B, C, T, H, W)`` or ``"tokens"``
  ``(B, N)``; see :mod:`visionattn.models.inputs`) and ``in_chans`` (C);
* ``forward_stem(x, padding_mask=None) -> state`` — the state is whatever its stages pass along (channels-last
  tokens ``(B, H, W, C)`` for attention models, ``(B, C, H, W)`` maps for ResNets, ``(B, 1 + N, C)`` with a
  class token for ViT);
* ``self.stages``: an ``nn.ModuleList``; each maps state → state, and takes ``key_padding_mask=`` when the
  family's :meth:`stage_padding_masks` gives it one;
* ``stage_map(state, i) -> (B, C_i, H_i, W_i)``: the feature map after stage ``i`` (for intermediates);
* ``forward_norm(state) -> features`` and ``forward_head(features, pre_logits=False)``;
* ``self.feature_info``: one ``FeatureInfo`` per stage; ``self.num_classes``; ``reset_classifier``;
* optionally ``stage_padding_masks(padding_mask)``: per stage, the key padding mask on the grid the stage's
  input has (attention families); the default gives none (convolutional families ignore padding masks).

This base adds ``forward``, ``forward_features``, ``forward_intermediates``, gradient checkpointing and
``fsdp_units``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layers.drop import drop_path_rates
from .inputs import check_input, check_padding_mask


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
    input_kind: ClassVar[str] = "image"  # "image" | "video" | "tokens": see visionattn.models.inputs
    input_multiple: int = 1  # input sides must be multiples of this (ViT/Swin: the patch); pad batches to it
    classifier_names: ClassVar[tuple[str, ...]] = ("head",)  # classifier modules (re-initialised by pretrained=True
    # when the checkpoint's class count differs)

    def __init__(self):
        super().__init__()
        self.grad_checkpointing = False

    # -- to be provided by the family ----------------------------------------------------------------
    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None):
        raise NotImplementedError

    def stage_map(self, state, index: int) -> Tensor:
        raise NotImplementedError

    def forward_norm(self, state):
        raise NotImplementedError

    def forward_head(self, features, pre_logits: bool = False) -> Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor | None]:
        """Per stage, the bool key padding mask on the grid of that stage's *input* (None: the stage takes no
        mask). ``padding_mask`` is the checked input mask (``(B, H, W)`` for images). Default: no stage takes
        one (convolutional families see padding through their convolutions; there is no key to mask)."""
        return [None] * len(self.stages)

    # -- shared ---------------------------------------------------------------------------------------
    @property
    def in_chans(self) -> int:
        return 3

    def fsdp_units(self) -> list[nn.Module]:
        """The modules FSDP shards one at a time: each stage's repeated blocks (a stage's ``blocks`` or its own
        children when it is an ``nn.Sequential`` / ``nn.ModuleList``; a stage that is itself a block, as ViT's,
        counts once). Wrap each with ``fully_shard`` in this order, then the root."""
        units: list[nn.Module] = []
        for stage in self.stages:
            blocks = getattr(stage, "blocks", stage)
            if isinstance(blocks, (nn.Sequential, nn.ModuleList)):
                units.extend(blocks)
            else:
                units.append(stage)
        return units

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in backward instead of storing its activations (training only)."""
        self.grad_checkpointing = enable

    def _run_stage(self, stage: nn.Module, state, mask: Tensor | None = None):
        kwargs = {} if mask is None else {"key_padding_mask": mask}
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, state, use_reentrant=False, **kwargs)
        return stage(state, **kwargs)

    def _check_input(self, x: Tensor) -> None:
        check_input(self.input_kind, x, self.in_chans, type(self).__name__)

    def _check_image(self, x: Tensor) -> None:  # the old name, kept for callers
        self._check_input(x)

    def _stage_masks(self, x: Tensor, padding_mask) -> tuple[Tensor | None, list[Tensor | None]]:
        mask = check_padding_mask(self.input_kind, x, padding_mask, type(self).__name__)
        if mask is None:
            return None, [None] * len(self.stages)
        masks = list(self.stage_padding_masks(mask))
        if len(masks) != len(self.stages):
            raise ValueError(f"{type(self).__name__}.stage_padding_masks gave {len(masks)} masks for "
                             f"{len(self.stages)} stages")
        return mask, masks

    def forward_features(self, x: Tensor, padding_mask: Tensor | None = None):
        """Input (``(B, 3, H, W)`` images for image families) → the final normalised features the head consumes.

        padding_mask: optional bool ``(B, H, W)`` (True = padding, from batching images of different sizes);
        attention families mask padded tokens as keys in every attention call (see :meth:`stage_padding_masks`),
        convolutional ones ignore it. Features at padded positions are not meaningful. Content features equal the
        image's alone only where nothing but attention mixes tokens (ViT: non-overlapping patches, global
        attention, position embedding fitted to the content); convolutions that overlap the border (stems,
        MBConv, 3×3 mixers) and Swin's windows (laid on the padded grid) still see the padding."""
        self._check_input(x)
        mask, masks = self._stage_masks(x, padding_mask)
        state = self.forward_stem(x) if mask is None else self.forward_stem(x, padding_mask=mask)
        for stage, stage_mask in zip(self.stages, masks, strict=True):
            state = self._run_stage(stage, state, stage_mask)
        return self.forward_norm(state)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` → logits ``(B, num_classes)`` (pooled features if ``num_classes == 0``)."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None,
                              padding_mask: Tensor | None = None) -> list[Tensor]:
        """Feature maps ``(B, C_i, H_i, W_i)`` after the selected stages (default: all), matching
        ``feature_info[i]`` in channels and ``ceil(H / reduction)``. An int ``n`` selects the last ``n`` stages.
        ``padding_mask``: as in :meth:`forward_features`."""
        self._check_input(x)
        count = len(self.stages)
        if indices is None:
            wanted = list(range(count))
        elif isinstance(indices, int):
            wanted = list(range(count - indices, count))
        else:
            wanted = [i % count if -count <= i < count else i for i in indices]
        bad = [i for i in wanted if not 0 <= i < count]
        if bad or not wanted:
            raise ValueError(f"{type(self).__name__} has {count} stages (indices 0..{count - 1}), got {indices!r}")
        mask, masks = self._stage_masks(x, padding_mask)
        state = self.forward_stem(x) if mask is None else self.forward_stem(x, padding_mask=mask)
        maps = []
        for i, stage in enumerate(self.stages[: max(wanted) + 1]):
            state = self._run_stage(stage, state, masks[i])
            if i in wanted:
                maps.append(self.stage_map(state, i))
        return maps


__all__ = ["Backbone", "FeatureInfo", "drop_path_rates", "init_linear"]
