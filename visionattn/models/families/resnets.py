"""ResNet-family presets: one :class:`~visionattn.models.resnet.ResNet` class, many mixers.

"Replace all the spatial mixing convolutions with attention": each preset is a :class:`ResNetSpec` whose
``mixers`` say which 3×3 convs became which attention pattern. The stem stays convolutional everywhere (SASA's
best models, HaloNet, BoTNet and Axial-DeepLab all keep a conv stem).

Purity, as the tutorial uses it: a body whose *every* spatial mixer is attention is ``'attention'`` (SASA,
HaloNet H0, Axial-ResNet — the papers call them stand-alone/fully attentional even with a conv stem, whose
7×7 conv on raw pixels the tutorial's guideline "reuse vision components" keeps); a body mixing 3×3 convs and
attention is ``'hybrid'`` (BoTNet, HaloNet-26t-style, Non-local ResNet, R26+ViT).
"""

from __future__ import annotations

from ...layers.bottleneck import CONV3X3, MixerSpec
from ...ops.patterns import Global, Halo, Neighborhood
from ..hybrid_vit import HybridViTSpec, build_hybrid_vit
from ..registry import Preset, register
from ..resnet import ResNetSpec, build_resnet
from ..taxonomy import Taxonomy

CNN = Taxonomy(purity="convolution", form="none", scales="multi", geometry="2d", block="bottleneck")
ATTN = Taxonomy(purity="attention", form="softmax", scales="multi", geometry="2d", block="bottleneck")
HYBRID = Taxonomy(purity="hybrid", form="softmax", scales="multi", geometry="2d", block="bottleneck")
HYBRID_VIT = Taxonomy(purity="hybrid", form="softmax", scales="single", geometry="sequence", block="transformer")


def sasa(heads: int = 8, kernel: int = 7) -> MixerSpec:
    """SASA: local ``kernel×kernel`` attention, zero-padding borders (masked), relative logits, 2×2 avg-pool
    after attention in stride-2 blocks."""
    return MixerSpec("attention", Neighborhood(kernel, border="pad"), "rel_logits", heads, downsample="pool")


def halo(heads: int = 8, block: int = 8, halo_size: int = 3) -> MixerSpec:
    """HaloNet: blocked local attention (``block`` queries per block, ``halo`` extra keys per side), relative
    logits; stride-2 blocks subsample the queries inside the operator."""
    return MixerSpec("attention", Halo(block, halo_size), "rel_logits", heads, downsample="query")


def bot(heads: int = 4) -> MixerSpec:
    """BoTNet: global (all-to-all) attention with 2D relative logits; stride-2 blocks average-pool after."""
    return MixerSpec("attention", Global(), "rel_logits", heads, downsample="pool")


def axial(heads: int = 8) -> MixerSpec:
    """Axial-DeepLab: height-then-width axial attention with relative logits; stride 2 by average pool."""
    return MixerSpec("axial", None, "rel_logits", heads, downsample="pool")


R26, R26_SASA, R50 = (2, 2, 2, 2), (1, 2, 4, 1), (3, 4, 6, 3)
C4 = (CONV3X3,) * 4
TEST_WIDTHS = (32, 64, 128, 256)


def _resnet(name, spec, taxonomy, paper, img_size=224, tiny=False, builder=build_resnet):
    register(Preset(name, builder, spec, taxonomy, img_size=img_size, tiny=tiny, paper=paper))


# -- convolutional baselines ----------------------------------------------------------------------------
_resnet("resnet26", ResNetSpec(depths=R26, mixers=C4), CNN,
        "ResNet-26 baseline, timm resnet26 layout (2,2,2,2) (He et al. 2016)")
_resnet("resnet50", ResNetSpec(depths=R50, mixers=C4), CNN,
        "ResNet-50 v1.5 (He et al. 2016), parameter- and state-dict-equal to timm resnet50")
_resnet("resnet_test", ResNetSpec(depths=(1, 1, 1, 1), widths=TEST_WIDTHS, stem_width=16, mixers=C4), CNN,
        "tiny ResNet for tests", img_size=32, tiny=True)

# -- SASA: every 3x3 -> 7x7 neighborhood attention ---------------------------------------------------------
_resnet("sasa_resnet26", ResNetSpec(depths=R26_SASA, mixers=(sasa(),) * 4), ATTN,
        "SASA ResNet-26 [1,2,4,1], conv stem (Ramachandran et al. 2019, 'Stand-Alone Self-Attention')")
_resnet("sasa_resnet50", ResNetSpec(depths=R50, mixers=(sasa(),) * 4), ATTN,
        "SASA ResNet-50, conv stem (Ramachandran et al. 2019)")
_resnet("sasa_resnet_test", ResNetSpec(depths=(1, 1, 2, 1), widths=TEST_WIDTHS, stem_width=16,
                                       mixers=(sasa(heads=2),) * 4), ATTN,
        "tiny SASA ResNet for tests", img_size=32, tiny=True)

# -- HaloNet: blocked local attention --------------------------------------------------------------------
# H0: the paper's rb=0.5 read as timm reads H1's rb=1.0 (mid = rb * width) gives 2.9M params, not 5.5M. With
# ratio 0.75 (and no output projection in the mixer, as in the paper) we get 4.8M: the paper's remaining
# 0.7M (its final 1x1 expansion d_f is not fully specified) is not reproduced.
_resnet("halonet_h0", ResNetSpec(depths=(3, 3, 7, 3), widths=(64, 128, 256, 512), bottleneck_ratio=0.75,
                                 mixers=(halo(),) * 4), ATTN,
        "HaloNet-H0-like (Vaswani et al. 2021): b=8, h=3, l3=7, every 3x3 is halo attention, conv stem; widths "
        "of timm's halonet_h1, bottleneck ratio 0.75 (4.8M params vs the paper's 5.5M)",
        img_size=256)
_resnet("halonet_tiny", ResNetSpec(depths=R26, stem="tiered", mixers=(CONV3X3, CONV3X3, (CONV3X3, halo()), halo())),
        HYBRID, "HaloNet-26t layout (timm halonet26t) with the paper's halo 3: halo attention in stages 3-4",
        img_size=256)
_resnet("halonet_test", ResNetSpec(depths=(1, 1, 1, 2), widths=TEST_WIDTHS, stem_width=16,
                                   mixers=(halo(2, 4, 1),) * 4), ATTN,
        "tiny HaloNet for tests (block 4, halo 1)", img_size=64, tiny=True)

# -- BoTNet: global attention in the last stage -------------------------------------------------------------
_resnet("botnet26", ResNetSpec(depths=R26, stem="tiered", mixers=(*C4[:3], bot())), HYBRID,
        "BoTNet-26: ResNet-26 with the last stage's 3x3 -> MHSA, 4 heads, rel. logits (Srinivas et al. 2021)",
        img_size=256)
_resnet("botnet50", ResNetSpec(depths=R50, mixers=(*C4[:3], bot())), HYBRID,
        "BoT50: ResNet-50 with c5's 3x3 -> MHSA, 4 heads, rel. logits (Srinivas et al. 2021)")
_resnet("botnet_test", ResNetSpec(depths=(1, 1, 1, 2), widths=TEST_WIDTHS, stem_width=16,
                                  mixers=(*C4[:3], bot(heads=2))), HYBRID,
        "tiny BoTNet for tests", img_size=64, tiny=True)

# -- Axial-ResNet: height-then-width attention --------------------------------------------------------------
_resnet("axial_resnet26", ResNetSpec(depths=R26_SASA, mixers=(axial(),) * 4), ATTN,
        "Axial-ResNet-26 [1,2,4,1] (SASA layout), conv stem (Wang et al. 2020, 'Axial-DeepLab')")
_resnet("axial_resnet_test", ResNetSpec(depths=(1, 1, 2, 1), widths=TEST_WIDTHS, stem_width=16,
                                        mixers=(axial(heads=2),) * 4), ATTN,
        "tiny Axial-ResNet for tests", img_size=32, tiny=True)

# -- Non-local ResNet: global attention blocks inserted -----------------------------------------------------
_resnet("nonlocal_resnet50", ResNetSpec(depths=R50, mixers=C4, nonlocal_after=((), (0, 2), (0, 2, 4))), HYBRID,
        "Non-local ResNet-50, 5 blocks: 2 in res3 + 3 in res4, after every other block (Wang et al. 2018)")
_resnet("nonlocal_resnet_test", ResNetSpec(depths=(1, 2, 2, 1), widths=TEST_WIDTHS, stem_width=16, mixers=C4,
                                           nonlocal_after=((), (0,), (1,))), HYBRID,
        "tiny Non-local ResNet for tests", img_size=32, tiny=True)

# -- R26 + ViT hybrid ---------------------------------------------------------------------------------------
_resnet("r26_vit", HybridViTSpec(), HYBRID_VIT,
        "R26+ViT-S/16 hybrid: ResNet-26 stages 1-3 then 12 ViT-S blocks on stride-16 tokens (Dosovitskiy et al. "
        "2021, hybrid)", builder=build_hybrid_vit)
_resnet("r26_vit_test", HybridViTSpec(depths=(1, 1, 1), widths=TEST_WIDTHS[:3], stem_width=16, dim=32, depth=2,
                                      heads=2), HYBRID_VIT,
        "tiny R26+ViT hybrid for tests", img_size=32, tiny=True, builder=build_hybrid_vit)

__all__ = ["ATTN", "CNN", "HYBRID", "HYBRID_VIT", "axial", "bot", "halo", "sasa"]
