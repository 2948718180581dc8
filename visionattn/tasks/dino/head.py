"""DINO's projection head and the model the task trains: any backbone (through the Backbone contract) + the head.

:class:`DinoHead` (Caron et al. 2021, section 3.1 and ``vision_transformer.DINOHead``)::

    h = MLP(x)                     # layers Linear-GELU-...-Linear: in_dim → hidden → ... → bottleneck
    z = h / max(‖h‖₂, eps)         # L2-normalised bottleneck, eps = 1e-12
    y = W z,  W_k = g_k v_k / ‖v_k‖₂   # weight-normalised last layer (no bias); g_k = 1 frozen when norm_last_layer

The MLP is initialised trunc-normal(0.02) with zero biases, the last layer as a default ``nn.Linear`` with its
weight norm's ``g`` filled with 1 (as the paper's code). The weight norm is
``torch.nn.utils.parametrizations.weight_norm`` (parameters ``last_layer.parametrizations.weight.original0`` = g,
``(K, 1)``, and ``original1`` = v, ``(K, bottleneck)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DinoHead", "DinoModel", "feature_width", "pooled_features"]


class DinoHead(nn.Module):
    """``(N, in_dim)`` → ``(N, out_dim)`` (see the module docstring). ``layers`` ≥ 1 Linear layers in the MLP
    (1: a single ``in_dim → bottleneck_dim`` Linear)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError(f"DinoHead: layers expected >= 1, got {layers}")
        if layers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            mods: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(layers - 2):
                mods += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            mods.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*mods)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # (out_dim, 1)
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.mlp(x)  # (N, bottleneck)
        x = nn.functional.normalize(x, dim=-1, p=2)  # (N, bottleneck), unit rows
        return self.last_layer(x)  # (N, out_dim)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The parameters frozen during the first epoch(s): the last layer's g and v."""
        return list(self.last_layer.parameters())


def pooled_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """The backbone's pooled image features ``(B, C)`` through the Backbone contract: ``forward_head(
    forward_features(x), pre_logits=True)`` (ViT: the class token after the final norm; Swin / ResNet: the mean
    of the last feature map)."""
    return backbone.forward_head(backbone.forward_features(x), pre_logits=True)


def feature_width(backbone: nn.Module) -> int:
    """Width C of :func:`pooled_features` (``num_features``, else the last ``feature_info`` entry's channels)."""
    width = getattr(backbone, "num_features", None)
    return int(width if width is not None else backbone.feature_info[-1].num_chs)


class DinoModel(nn.Module):
    """A backbone and a :class:`DinoHead`: ``forward(crops)`` → head outputs ``(N, out_dim)``.

    ``crops``: a ``(B, C, H, W)`` tensor, or a sequence of them whose sizes may differ (global and local crops);
    the outputs are concatenated in the order given, one backbone call per run of equal-sized tensors (DINO's
    ``MultiCropWrapper``). :meth:`features` gives the backbone's pooled features ``(B, C)`` (evaluation)."""

    def __init__(self, backbone: nn.Module, head: DinoHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def preset(self):
        """The backbone's registry preset (names the model in attention-map captions)."""
        return getattr(self.backbone, "preset", None)

    @property
    def num_prefix_tokens(self):
        return getattr(self.backbone, "num_prefix_tokens", None)

    def features(self, x: Tensor) -> Tensor:
        return pooled_features(self.backbone, x)

    def forward(self, crops: Tensor | Sequence[Tensor]) -> Tensor:
        if isinstance(crops, Tensor):
            crops = [crops]
        if not crops or not all(isinstance(c, Tensor) and c.ndim == 4 for c in crops):
            raise ValueError(f"DinoModel: expected a (B, C, H, W) tensor or a non-empty sequence of them, got "
                             f"{[tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__ for c in crops]}")
        feats = []
        start = 0
        while start < len(crops):  # runs of equal sizes: one backbone call each
            end = start + 1
            while end < len(crops) and crops[end].shape[1:] == crops[start].shape[1:]:
                end += 1
            run = crops[start] if end == start + 1 else torch.cat(list(crops[start:end]))
            if run.shape[0]:
                feats.append(self.features(run))  # (n, C)
            start = end
        return self.head(torch.cat(feats))  # (N, out_dim)

    def no_weight_decay(self) -> set[str]:
        """The backbone's no-decay names (tokens, positions), prefixed; 1-D parameters are excluded anyway."""
        own = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in own()} if callable(own) else set()
