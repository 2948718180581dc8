"""nn.Modules built on the operator: attention layers, position modules, absolute embeddings."""

from .absolute import LearnedPositionEmbedding, SinCosPositionEmbedding, sincos_position_embedding
from .attention import Attention, AxialAttention
from .bottleneck import BottleneckBlock, BottleneckStage, MixerSpec
from .drop import drop_path_rates, stage_drop_path_rates
from .embed import PatchEmbed
from .nonlocal_block import NonLocalBlock
from .padding import downsample_mask
from .position import (
    POSITION_KINDS,
    RelativeBiasTable,
    RelativeLogitsTable,
    RotaryEmbedding,
    make_position,
    position_radius,
)
from .resize import resize_relative
from .stems import make_stem
from .transformer import TransformerBlock

__all__ = [
    "POSITION_KINDS",
    "BottleneckBlock",
    "BottleneckStage",
    "MixerSpec",
    "NonLocalBlock",
    "PatchEmbed",
    "TransformerBlock",
    "downsample_mask",
    "drop_path_rates",
    "stage_drop_path_rates",
    "make_stem",
    "resize_relative",
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
