"""nn.Modules built on the operator: attention layers, position modules, absolute embeddings."""

from .absolute import LearnedPositionEmbedding, SinCosPositionEmbedding, sincos_position_embedding
from .attention import Attention, AxialAttention
from .position import (
    POSITION_KINDS,
    RelativeBiasTable,
    RelativeLogitsTable,
    RotaryEmbedding,
    make_position,
    position_radius,
)

__all__ = [
    "POSITION_KINDS",
    "Attention",
    "AxialAttention",
    "LearnedPositionEmbedding",
    "RelativeBiasTable",
    "RelativeLogitsTable",
    "RotaryEmbedding",
    "SinCosPositionEmbedding",
    "make_position",
    "position_radius",
    "sincos_position_embedding",
]
