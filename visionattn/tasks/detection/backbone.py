"""Any registered backbone as DETR's feature extractor, through the Backbone contract only.

``forward_intermediates(images, indices, padding_mask=...)`` gives the feature maps; the pixel padding mask is
carried to each map's grid with DETR's rule (nearest-neighbour resize of the mask to the map's size: a token is
padding when the pixel at its top-left corner is). Batches are padded to :attr:`DetrBackbone.size_multiple`, a
multiple of every used stage's reduction and of the backbone's input multiple, so that rule and the backbones' own
("padding iff everything the token covers is padding") agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DetrBackbone", "mask_to_grid"]


def mask_to_grid(mask: Tensor, size: Sequence[int]) -> Tensor:
    """Pixel padding mask ``(B, H, W)`` bool → ``(B, h, w)`` bool on a feature grid (DETR's nearest resize)."""
    return F.interpolate(mask[None].float(), size=tuple(int(s) for s in size)).to(torch.bool)[0]


class DetrBackbone(nn.Module):
    """``body``: a registered preset built with ``num_classes=0`` (``visionattn.models.create_model``).
    ``indices``: the stages whose maps are returned (any order and sign; kept ascending, e.g. ``(0, 1, 2, 3)`` for
    the panoptic head's FPN plus the transformer's input, which is the last of them).

    ``forward(images (B, 3, H, W), padding_mask (B, H, W) bool | None)`` → ``[(map (B, C_i, H_i, W_i), mask
    (B, H_i, W_i) bool)]``, one pair per index (a ``None`` padding mask gives all-False masks).

    Stages after the last index are dropped from ``body`` (they would never run), and parameters the feature path
    never reaches (a classifier, a final norm applied only by ``forward_features``) are frozen, found once with an
    autograd probe at construction, so every trainable parameter gets a gradient (DDP requires it)."""

    def __init__(self, body: nn.Module, indices: Sequence[int]):
        super().__init__()
        count = len(body.stages)
        wanted = sorted({int(i) % count if -count <= int(i) < count else int(i) for i in indices})
        if not wanted or any(not 0 <= i < count for i in wanted):
            raise ValueError(f"DETR backbone {type(body).__name__} has {count} stages (0..{count - 1}); feature "
                             f"indices {list(indices)} are out of range")
        last = wanted[-1]
        if last < count - 1:
            body.stages = nn.ModuleList(list(body.stages)[: last + 1])
            body.feature_info = list(body.feature_info)[: last + 1]
        self.body = body
        self.indices = wanted
        self.channels = [int(body.feature_info[i].num_chs) for i in wanted]
        self.reductions = [int(body.feature_info[i].reduction) for i in wanted]
        self.size_multiple = math.lcm(int(getattr(body, "input_multiple", 1)), *self.reductions)
        self.frozen = self._freeze_unreached()

    @torch.no_grad()
    def _probe_input(self) -> Tensor:
        side = max(64, 2 * self.size_multiple)
        return torch.ones(1, self.body.in_chans, side, side, device=next(self.body.parameters()).device)

    def _freeze_unreached(self) -> list[str]:
        """Names of the parameters frozen because no returned map depends on them."""
        if not any(p.requires_grad for p in self.body.parameters()):
            return []
        was = self.body.training
        self.body.eval()  # no batch-norm statistics move; no dropout draws
        try:
            with torch.enable_grad():
                maps = self.body.forward_intermediates(self._probe_input(), indices=self.indices)
                params = [p for p in self.body.parameters() if p.requires_grad]
                grads = torch.autograd.grad(sum(m.float().sum() for m in maps), params, allow_unused=True)
        finally:
            self.body.train(was)
        reached = {id(p) for p, g in zip(params, grads, strict=True) if g is not None}
        frozen = []
        for name, p in self.body.named_parameters():
            if p.requires_grad and id(p) not in reached:
                p.requires_grad_(False)
                frozen.append(name)
        return frozen

    def forward(self, images: Tensor, padding_mask: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        maps = self.body.forward_intermediates(images, indices=self.indices, padding_mask=padding_mask)
        if padding_mask is None:
            padding_mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        return [(m, mask_to_grid(padding_mask, m.shape[-2:])) for m in maps]
