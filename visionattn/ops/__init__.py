"""The universal mixing operator: ``attention(q, k, v, pattern, position=, form=, backend=)``.

Public names only: code outside ``ops`` (layers, models, analysis, experiments) imports from here, never from
``ops.backends``, ``ops.call`` or ``ops.dispatch``.
"""

from .backends import BACKENDS, neighborhood_tile
from .backends import DEFAULT_TILE as BLOCKED_DEFAULT_TILE
from .backends import TileSet as BlockedTileSet
from .backends import tile_sets as blocked_tile_sets
from .call import AttentionCall
from .dispatch import (
    BackendUnavailable,
    attention,
    choose_backend,
    intercept_attention,
    observe_attention,
    prepare_call,
)
from .patterns import Axial, Causal, Global, Graph, Halo, Neighborhood, Pattern, Strided, Window, axial_patterns
from .position import RelativeBias, RelativeLogits, Rope, rope_frequencies
from .probs import attention_probs, feature_map

__all__ = [
    "BACKENDS",
    "BLOCKED_DEFAULT_TILE",
    "BlockedTileSet",
    "AttentionCall",
    "Axial",
    "BackendUnavailable",
    "Causal",
    "Global",
    "Graph",
    "Halo",
    "Neighborhood",
    "Pattern",
    "RelativeBias",
    "RelativeLogits",
    "Rope",
    "Strided",
    "Window",
    "attention",
    "attention_probs",
    "axial_patterns",
    "blocked_tile_sets",
    "choose_backend",
    "feature_map",
    "intercept_attention",
    "neighborhood_tile",
    "observe_attention",
    "prepare_call",
    "rope_frequencies",
]
