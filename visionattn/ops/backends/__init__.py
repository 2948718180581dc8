"""Backends of the operator, in the order ``backend='auto'`` tries them on each device type."""

from .base import Backend
from .blocked import BLOCKED, DEFAULT_TILE, TileSet, neighborhood_tile, tile_sets
from .flex import FLEX
from .linear import LINEAR
from .reference import REFERENCE

BACKENDS: dict[str, Backend] = {b.name: b for b in (REFERENCE, BLOCKED, FLEX, LINEAR)}
AUTO_ORDER = {
    "cpu": ("blocked", "linear", "reference", "flex"),
    "cuda": ("blocked", "flex", "linear", "reference"),
}

__all__ = ["AUTO_ORDER", "BACKENDS", "DEFAULT_TILE", "Backend", "TileSet", "neighborhood_tile", "tile_sets"]
