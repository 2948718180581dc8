"""The universal mixing operator: ``attention(q, k, v, pattern, position=, form=, backend=)``."""

from .backends import BACKENDS, neighborhood_tile
from .dispatch import BackendUnavailable, attention, choose_backend, intercept_attention, observe_attention
from .patterns import Axial, Global, Graph, Halo, Neighborhood, Pattern, Strided, Window, axial_patterns
from .position import RelativeBias, RelativeLogits, Rope, rope_frequencies

__all__ = [
    "BACKENDS",
    "Axial",
    "BackendUnavailable",
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
    "axial_patterns",
    "choose_backend",
    "intercept_attention",
    "neighborhood_tile",
    "observe_attention",
    "rope_frequencies",
]
