"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

For a residual Transformer, layer ``l`` mixes tokens by ``x + Attn(x)``; rollout models it as the row-stochastic
``Â_l = (Ā_l + I) / 2`` renormalised per row, where ``Ā_l`` is the head mean of the layer's attention matrix, and
composes the layers: ``R = Â_L · ... · Â_1`` (``R[i, j]``: how much of input token ``j`` flows into output token
``i``). Only isotropic models qualify — every layer global attention over the same tokens, each the ``attn`` of a
residual ``TransformerBlock`` (ViT, DeiT, DINO, the R26+ViT hybrid's transformer): in a pyramid or a ResNet the
token sets change between layers and convolutions mix tokens outside attention, so a product of attention matrices
means nothing there; those get a ``ValueError`` naming the model and why.

Rollout needs every layer's full ``N × N`` matrix (each product row reaches every token), so it rebuilds them with
:func:`~visionattn.analysis.maps.attention_rows` over all rows, one layer at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..ops.patterns import Global
from .maps import AttentionCapture, as_query_list, attention_rows, query_index, upsample_to_image

__all__ = ["check_isotropic", "rollout_maps", "rollout_matrix", "rollout_rows"]


def check_isotropic(capture: AttentionCapture) -> None:
    """``ValueError`` naming the model and the first reason rollout does not apply to it, else None."""
    model = capture.model_name
    why = "attention rollout multiplies the layers' attention matrices, so it needs an isotropic model (ViT family)"
    if not capture.complete:
        raise ValueError(f"{why}; the capture of {model} holds only layers {[la.name for la in capture.layers]} of "
                         f"{capture.all_names}: capture with layers=None")
    first = capture.layers[0]
    for layer in capture.layers:
        call = layer.records[-1].call
        if len(layer.records) != 1 or not isinstance(call.pattern, Global):
            patterns = " then ".join(repr(r.call.pattern) for r in layer.records)
            raise ValueError(f"{why}: every layer must be Global() attention, but {model}'s layer {layer.name} uses "
                             f"{patterns} (local/windowed attention: token j reaches i only through other layers)")
        if call.q_grid != call.kv_grid or call.kv_grid != first.records[0].call.kv_grid:
            raise ValueError(f"{why}: every layer must mix the same tokens, but {model}'s layer {layer.name} runs on "
                             f"grid {call.kv_grid} (query grid {call.q_grid}) and {first.name} on "
                             f"{first.records[0].call.kv_grid} (a pyramid)")
        if not layer.records[-1].residual:
            raise ValueError(f"{why}: every layer must be the attention of a residual TransformerBlock, but "
                             f"{model}'s layer {layer.name} is not (convolutions mix tokens between attention layers)")
        if layer.unmappable:
            raise ValueError(f"{model}'s layer {layer.name} cannot be mapped onto the image: {layer.unmappable}")


def rollout_matrix(capture: AttentionCapture) -> Tensor:
    """The rollout ``R = Â_L ··· Â_1``: float32 ``(B, N, N)`` over all tokens (prefix tokens first). Rows sum to 1."""
    check_isotropic(capture)
    result = None
    for layer in capture.layers:
        call = layer.records[0].call
        n = math.prod(call.kv_grid)
        mean = attention_rows(call, torch.arange(n)).mean(dim=2)  # (B, N, N) head mean
        step = (mean + torch.eye(n, device=mean.device)) / 2
        step = step / step.sum(-1, keepdim=True)
        result = step if result is None else step @ result
    return result


def rollout_rows(capture: AttentionCapture, queries) -> Tensor:
    """Rollout rows of the queries (``"cls"`` or pixels ``(x, y)``) over the patch tokens: ``(B, Q, h, w)``
    (prefix tokens dropped)."""
    matrix = rollout_matrix(capture)
    layer = capture.layers[-1]
    queries = as_query_list(queries)
    if not queries:
        raise ValueError("rollout_rows: expected at least one query ('cls' or (x, y)), got none")
    rows = torch.tensor([query_index(layer, q, capture.image_size) for q in queries], dtype=torch.long)
    out = matrix[:, rows.to(matrix.device), layer.prefix:]  # (B, Q, h * w)
    return out.reshape(*out.shape[:-1], *layer.key_grid)


def rollout_maps(capture: AttentionCapture, queries) -> Tensor:
    """:func:`rollout_rows` on the model input: float32 ``(B, Q, H, W)``."""
    layer = capture.layers[-1]
    return upsample_to_image(rollout_rows(capture, queries), layer.reduction, capture.image_size)
