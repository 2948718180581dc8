"""The tutorial's taxonomy of attention backbones, as data every preset carries."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PURITY = ("attention", "hybrid", "convolution")
FORM = ("softmax", "linear", "none")
SCALES = ("single", "multi")
GEOMETRY = ("set", "sequence", "2d", "video")
BLOCK = ("transformer", "bottleneck", "mixed")


@dataclass(frozen=True)
class Taxonomy:
    """Where a backbone sits on the tutorial's axes.

    purity: fully attentional / hybrid conv–attention / fully convolutional. form: attention form ('none' for
    a CNN). scales: one token resolution throughout, or a pyramid. geometry: what the attention sees (a set of
    tokens, a 1D sequence of patches, a 2D grid with locality, a video's (T, H, W) space-time grid). block:
    Transformer block, ResNet bottleneck block with the spatial conv replaced, or a mix (CoAtNet: MBConv then
    Transformer).
    """

    purity: str
    form: str
    scales: str
    geometry: str
    block: str

    def __post_init__(self):
        for name, allowed in (("purity", PURITY), ("form", FORM), ("scales", SCALES), ("geometry", GEOMETRY),
                              ("block", BLOCK)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Taxonomy.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        return asdict(self)
