"""nn.Modules built on the operator: attention layers, position modules, absolute embeddings."""

from .absolute import LearnedPositionEmbedding, SinCosPositionEmbedding, sincos_position_embedding
from .attention import Attention, AxialAttention
from .bottleneck import BottleneckBlock, MixerSpec
from .embed import PatchEmbed
from .nonlocal_block import NonLocalBlock
from .position import (
    POSITION_KINDS,
    RelativeBiasTable,
    RelativeLogitsTable,
    RotaryEmbedding,
    make_position,
    position_radius,
)
from .stems import make_stem
from .transformer import TransformerBlock

__all__ = [
    "POSITION_KINDS",
    "BottleneckBlock",
    "MixerSpec",
    "NonLocalBlock",
    "PatchEmbed",
    "TransformerBlock",
    "make_stem",
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
