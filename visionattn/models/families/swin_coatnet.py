"""Presets of the multi-scale families: Swin (shifted windows) and CoAtNet (MBConv then relative attention).

Each preset is data: a spec, a taxonomy and the default input size; ``create_model`` builds it.
"""

from __future__ import annotations

from ..coatnet import CoAtNet, CoAtNetSpec
from ..registry import Preset, register
from ..swin import Swin, SwinSpec
from ..taxonomy import Taxonomy

SWIN = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="2d", block="transformer")
COATNET = Taxonomy(purity="hybrid", form="softmax", scales="multi", geometry="2d", block="mixed")

_SWIN_PAPER = "Liu et al. 2021, Swin Transformer: Hierarchical Vision Transformer using Shifted Windows"
_COATNET_PAPER = "Dai et al. 2021, CoAtNet: Marrying Convolution and Attention for All Data Sizes"

for _name, _spec, _size, _tiny in (
    ("swin_tiny_patch4_window7_224", SwinSpec(embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)), 224, False),
    ("swin_small_patch4_window7_224",
     SwinSpec(embed_dim=96, depths=(2, 2, 18, 2), heads=(3, 6, 12, 24), drop_path=0.3), 224, False),
    ("swin_base_patch4_window7_224",
     SwinSpec(embed_dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), drop_path=0.5), 224, False),
    # a small model for users: Swin-T's layout at half width and depth 2 per stage (5.5M params, 0.8 GMACs)
    ("swin_nano_patch4_window7_224",
     SwinSpec(embed_dim=48, depths=(2, 2, 2, 2), heads=(3, 6, 12, 24), drop_path=0.1), 224, False),
    # test variant: grids 16, 8, 4, 2 at 64 px; shifted windows in stages 0 and 1, global in 2 and 3
    ("swin_test", SwinSpec(embed_dim=16, depths=(2, 2, 1, 1), heads=(1, 2, 4, 8), window=4, drop_path=0.0), 64, True),
):
    register(Preset(_name, Swin, _spec, SWIN, img_size=_size, tiny=_tiny, paper=_SWIN_PAPER))

register(Preset("coatnet_0_224", CoAtNet, CoAtNetSpec(), COATNET, img_size=224, paper=_COATNET_PAPER))
register(Preset(
    "coatnet_test", CoAtNet,
    CoAtNetSpec(stem_dim=8, dims=(8, 16, 32, 64), depths=(1, 1, 2, 1), head_dim=16, drop_path=0.0),
    COATNET, img_size=64, tiny=True, paper=_COATNET_PAPER,
))
