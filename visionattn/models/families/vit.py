"""Vision Transformer (ViT, DeiT incl. the distilled variant, DINO backbones) as data: a :class:`VitSpec` → a
:class:`VisionTransformer`, and its presets.

ViT is the plainest point of the tutorial's taxonomy: fully attentional, softmax, single scale, the image seen
as a *sequence* of patches, Transformer blocks. Every block is :class:`visionattn.layers.TransformerBlock` with
the ``Global()`` pattern on a 1D grid of ``prefix + N`` tokens (prefix = class token, + distillation token).

Module and parameter names follow timm's wherever they can (``patch_embed.proj``, ``cls_token``, ``dist_token``,
``norm``, ``fc_norm``, ``head``, ``head_dist``, and inside each block ``norm1 / attn.qkv / attn.proj / norm2 /
mlp.fc1 / mlp.fc2``). Two differ: blocks live in ``stages.i`` (the Backbone contract), and timm's
``pos_embed (1, prefix + N, C)`` is split into ``prefix_pos (1, prefix, C)`` and ``pos_embed.weight
(1, H/p, W/p, C)`` (a :class:`~visionattn.layers.LearnedPositionEmbedding`, interpolated for other input sizes).
:meth:`VisionTransformer.convert_state_dict` maps timm / DINO checkpoints onto these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers.absolute import LearnedPositionEmbedding, SinCosPositionEmbedding
from ...layers.drop import drop_path_rates
from ...layers.embed import PatchEmbed
from ...layers.padding import downsample_mask
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Global
from ..backbone import Backbone, FeatureInfo
from ..registry import Preset, register
from ..sizes import to_pair
from ..taxonomy import Taxonomy

POOLS = ("token", "avg")
POS_EMBEDS = ("learned", "sincos", "none")
ACTS = ("gelu", "quick_gelu")


@dataclass(frozen=True)
class VitSpec:
    """A ViT / DeiT architecture.

    patch: patch size p (the token grid is ``H/p × W/p``). dim: token channels C. depth: Transformer blocks.
    heads: attention heads. mlp_ratio: MLP hidden = ``dim * mlp_ratio``. class_token: prepend a class token.
    distilled: also prepend a distillation token with its own head ``head_dist`` (DeiT). drop_path: stochastic
    depth rate of the last block (linearly increasing from 0, as in timm). layer_scale: initial LayerScale
    value (None = off). global_pool: ``'token'`` (class token) or ``'avg'`` (mean of the patch tokens, then
    ``fc_norm``, timm's arrangement). pos_embed: ``'learned'``, ``'sincos'`` (fixed 2D) or ``'none'``.
    qkv_bias: bias in the qkv projection. norm_eps: LayerNorm epsilon. drop_rate: dropout after the attention
    projection / MLP and before the head. backend: operator backend for every block (``'auto'``, ...).
    pre_norm: a LayerNorm ``norm_pre`` on the tokens before the first block (CLIP's ``ln_pre``; timm's
    ``pre_norm``). act: the MLP activation, ``'gelu'`` or ``'quick_gelu'`` (OpenAI's CLIP checkpoints).
    """

    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    class_token: bool = True
    distilled: bool = False
    drop_path: float = 0.0
    layer_scale: float | None = None
    global_pool: str = "token"
    pos_embed: str = "learned"
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    drop_rate: float = 0.0
    backend: str = "auto"
    pre_norm: bool = False
    act: str = "gelu"

    def __post_init__(self):
        if self.act not in ACTS:
            raise ValueError(f"VitSpec.act must be one of {ACTS}, got {self.act!r}")
        if self.global_pool not in POOLS:
            raise ValueError(f"VitSpec.global_pool must be one of {POOLS}, got {self.global_pool!r}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"VitSpec.pos_embed must be one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if self.patch < 1 or self.dim < 1 or self.depth < 1 or self.heads < 1:
            raise ValueError(
                f"VitSpec needs patch, dim, depth, heads ≥ 1, got patch={self.patch}, dim={self.dim}, "
                f"depth={self.depth}, heads={self.heads}"
            )
        if self.dim % self.heads:
            raise ValueError(f"VitSpec: dim {self.dim} is not divisible by heads {self.heads}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("VitSpec: global_pool='token' needs class_token=True (or use global_pool='avg')")
        if self.distilled and not (self.class_token and self.global_pool == "token"):
            raise ValueError(
                f"VitSpec: distilled=True reads the class and distillation tokens, so it needs class_token=True "
                f"and global_pool='token', got class_token={self.class_token}, global_pool={self.global_pool!r}"
            )

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled)


class VisionTransformer(Backbone):
    """ViT / DeiT backbone. Images ``(B, 3, H, W)`` with H, W multiples of ``spec.patch``.

    * ``forward_stem``: PatchEmbed → ``(B, H/p, W/p, C)`` + grid position embedding (interpolated when the grid
      is not the trained one), flattened, prefix tokens (+ their positions) prepended, ``norm_pre`` (Identity
      unless ``pre_norm``) → ``(B, prefix + N, C)``.
    * ``stages``: one :class:`TransformerBlock` per layer, ``(B, L, C) → (B, L, C)``; ``stage_map`` gives the
      patch tokens as a map ``(B, C, H/p, W/p)`` (``feature_info`` reduction = patch).
    * ``forward_norm``: final LayerNorm ``(B, L, C)`` (Identity for ``global_pool='avg'``: timm normalises after
      pooling with ``fc_norm``).
    * ``forward_head(features, pre_logits)``: pool → ``(B, C)``, then ``head`` → ``(B, num_classes)``. Distilled
      models average ``head(cls)`` and ``head_dist(dist)`` (the eval output of DeiT); the two separate logits
      for hard distillation come from :meth:`forward_distill`.

    ``num_classes=0`` makes the head an Identity: ``forward`` returns pooled features ``(B, C)``.

    Any input whose sides are multiples of the patch runs (the learned position table is interpolated). A padding
    mask ``(B, H, W)`` marks patches that are all padding as keys never attended (prefix tokens never are), and
    fits each image's position embedding to its content extent, so an image padded at the right/bottom gives
    the features it gives alone (up to rounding) at its content tokens.
    """

    classifier_names = ("head", "head_dist")

    def __init__(self, spec: VitSpec, num_classes: int = 1000, img_size: int | tuple[int, int] = 224):
        super().__init__()
        self.spec = spec
        self.img_size = to_pair(img_size)
        if any(s % spec.patch for s in self.img_size):
            raise ValueError(
                f"VisionTransformer: img_size {self.img_size} is not a multiple of the patch size {spec.patch}"
            )
        self.stem_reduction = self.input_multiple = spec.patch
        self.grid = tuple(s // spec.patch for s in self.img_size)  # (H/p, W/p) of the trained resolution
        C = self.num_features = self.embed_dim = spec.dim
        self.num_prefix_tokens = spec.num_prefix_tokens
        self.num_classes = num_classes

        self.patch_embed = PatchEmbed(spec.patch, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if spec.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, C)) if spec.distilled else None
        if spec.pos_embed == "learned":
            self.pos_embed = LearnedPositionEmbedding(self.grid, C)  # weight (1, H/p, W/p, C)
            self.prefix_pos = nn.Parameter(torch.zeros(1, self.num_prefix_tokens, C)) if self.num_prefix_tokens \
                else None
        else:
            self.pos_embed = SinCosPositionEmbedding(C) if spec.pos_embed == "sincos" else nn.Identity()
            self.prefix_pos = None
        self.norm_pre = nn.LayerNorm(C, eps=spec.norm_eps) if spec.pre_norm else nn.Identity()

        rates = drop_path_rates(spec.drop_path, spec.depth)
        self.stages = nn.ModuleList(
            TransformerBlock(C, spec.heads, Global(), mlp_ratio=spec.mlp_ratio, qkv_bias=spec.qkv_bias,
                             drop_path=rate, proj_drop=spec.drop_rate, layer_scale=spec.layer_scale,
                             norm_eps=spec.norm_eps, backend=spec.backend, dims=1, act_layer=spec.act)
            for rate in rates
        )
        self.feature_info = [FeatureInfo(C, spec.patch, f"stages.{i}") for i in range(spec.depth)]
        avg = spec.global_pool == "avg"
        self.norm = nn.Identity() if avg else nn.LayerNorm(C, eps=spec.norm_eps)
        self.fc_norm = nn.LayerNorm(C, eps=spec.norm_eps) if avg else nn.Identity()
        self.head_drop = nn.Dropout(spec.drop_rate)
        self.head: nn.Module = nn.Identity()
        self.head_dist: nn.Module | None = None
        self._last_grid = self.grid
        self._init_weights()
        self.reset_classifier(num_classes)

    def _init_weights(self) -> None:
        """timm's default ViT init: trunc-normal(0.02) Linear weights, zero biases, tiny class token."""
        for m in self.stages.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for p in (self.dist_token, self.prefix_pos):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def reset_classifier(self, num_classes: int) -> None:
        """New zero-bias head(s) ``dim → num_classes`` (Identity for 0)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0, got {num_classes}")
        self.num_classes = num_classes

        def make() -> nn.Module:
            if not num_classes:
                return nn.Identity()
            head = nn.Linear(self.embed_dim, num_classes)
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
            return head

        self.head = make()
        if self.spec.distilled:
            self.head_dist = make()

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers usually exclude from weight decay (tokens and positions)."""
        names = {"cls_token", "dist_token", "prefix_pos", "pos_embed.weight"}
        return {n for n, _ in self.named_parameters() if n in names}

    # -- Backbone contract ----------------------------------------------------------------------------
    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Images ``(B, 3, H, W)`` → tokens ``(B, prefix + H/p · W/p, C)``. ``padding_mask`` ``(B, H, W)``: the
        learned position embedding is fitted to each image's content (see the class docstring)."""
        p = self.spec.patch
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"{type(self).__name__}: input {x.shape[-2]}×{x.shape[-1]} is not a multiple of the patch size "
                f"{p} (expected H and W divisible by {p}, e.g. {self.img_size[0]}×{self.img_size[1]})"
            )
        x = self.patch_embed(x)  # (B, H/p, W/p, C)
        B, h, w, C = x.shape
        self._last_grid = (h, w)  # stage_map reshapes the patch tokens back to this grid
        if padding_mask is not None and isinstance(self.pos_embed, LearnedPositionEmbedding):
            x = self.pos_embed(x, padding_mask=downsample_mask(padding_mask, p))  # (B, h, w, C)
        else:
            x = self.pos_embed(x)  # (B, h, w, C)
        x = x.reshape(B, h * w, C)  # (B, N, C)
        prefix = [t for t in (self.cls_token, self.dist_token) if t is not None]
        if not prefix:
            return self.norm_pre(x)
        tokens = torch.cat(prefix, dim=1)  # (1, prefix, C)
        if self.prefix_pos is not None:
            tokens = tokens + self.prefix_pos
        return self.norm_pre(torch.cat([tokens.expand(B, -1, -1).to(x.dtype), x], dim=1))  # (B, prefix + N, C)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        """Every block gets ``(B, prefix + N)``: the prefix tokens, then each patch (padding iff all padding)."""
        patches = downsample_mask(padding_mask, self.spec.patch).flatten(1)  # (B, N)
        prefix = patches.new_zeros(patches.shape[0], self.num_prefix_tokens)  # (B, prefix): never padding
        mask = torch.cat([prefix, patches], dim=1)  # (B, prefix + N)
        return [mask] * len(self.stages)

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        """Tokens ``(B, prefix + N, C)`` → the patch tokens as a map ``(B, C, H/p, W/p)`` (prefix dropped)."""
        h, w = self._last_grid
        x = state[:, self.num_prefix_tokens:]  # (B, N, C)
        return x.reshape(x.shape[0], h, w, x.shape[-1]).permute(0, 3, 1, 2)  # (B, C, h, w)

    def forward_norm(self, state: Tensor) -> Tensor:
        """Final LayerNorm over ``(B, L, C)`` (Identity when ``global_pool='avg'``)."""
        return self.norm(state)

    def pool(self, features: Tensor) -> Tensor:
        """``(B, L, C)`` → ``(B, C)``: the class token, the mean of cls/dist tokens (distilled), or the mean of
        the patch tokens followed by ``fc_norm`` (avg)."""
        if self.spec.global_pool == "avg":
            return self.fc_norm(features[:, self.num_prefix_tokens:].mean(dim=1))
        if self.spec.distilled:
            return (features[:, 0] + features[:, 1]) / 2
        return features[:, 0]

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Features ``(B, L, C)`` → logits ``(B, num_classes)``, or pooled ``(B, C)`` if ``pre_logits``."""
        if pre_logits:
            return self.head_drop(self.pool(features))
        if self.spec.distilled:
            cls_logits, dist_logits = self._distill_logits(features)
            return (cls_logits + dist_logits) / 2
        return self.head(self.head_drop(self.pool(features)))

    def _distill_logits(self, features: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.head_drop(features[:, 0])), self.head_dist(self.head_drop(features[:, 1]))

    def forward_distill(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images ``(B, 3, H, W)`` → ``(cls_logits, dist_logits)``, each ``(B, num_classes)``: the class-token
        head (trained on labels) and the distillation-token head (trained on the teacher's hard labels).
        ``forward(x)`` is their mean. Only for ``distilled`` specs."""
        if not self.spec.distilled:
            raise ValueError(f"{type(self).__name__}.forward_distill needs a distilled spec, got distilled=False")
        return self._distill_logits(self.forward_features(x))

    # -- checkpoint import ----------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """timm / DINO ViT keys → ours. ``blocks.i.*`` → ``stages.i.*``; ``pos_embed (1, prefix + n·n, C)`` →
        ``prefix_pos (1, prefix, C)`` and ``pos_embed.weight (1, n, n, C)``, resized (bicubic, antialiased, as
        timm's checkpoint filter) when ``n × n`` is not this model's grid. Other keys (and a ``pos_embed`` that is
        not ``prefix`` tokens + a square grid) pass through unchanged, so a wrong checkpoint is reported by the
        loader as missing / unexpected / mis-shaped keys."""
        out = {}
        for key, value in state_dict.items():
            if key.startswith("blocks."):
                out["stages." + key[len("blocks."):]] = value
            elif key == "pos_embed" and value.ndim == 3 and isinstance(self.pos_embed, LearnedPositionEmbedding):
                out.update(self._split_pos_embed(value))
            else:
                out[key] = value
        return out

    def _split_pos_embed(self, value: Tensor) -> dict[str, Tensor]:
        prefix = self.num_prefix_tokens
        n = value.shape[1] - prefix
        side = math.isqrt(max(n, 0))
        if n < 1 or side * side != n:  # not prefix + a square grid: left as is, reported as unexpected by the loader
            return {"pos_embed": value}
        out = {"prefix_pos": value[:, :prefix]} if prefix else {}
        grid = value[:, prefix:].reshape(1, side, side, value.shape[-1])  # (1, n, n, C)
        if (side, side) != self.grid:
            resized = F.interpolate(grid.permute(0, 3, 1, 2).float(), size=self.grid, mode="bicubic",
                                    align_corners=False, antialias=True)  # (1, C, H/p, W/p)
            grid = resized.permute(0, 2, 3, 1).to(value.dtype)  # (1, H/p, W/p, C)
        out["pos_embed.weight"] = grid
        return out


# -- presets ---------------------------------------------------------------------------------------------
VIT_TAXONOMY = Taxonomy(purity="attention", form="softmax", scales="single", geometry="sequence", block="transformer")
_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}  # dim, heads; depth 12, mlp_ratio 4


def _vit(name: str, size: str, patch: int = 16, paper: str = "", img_size: int = 224, tiny: bool = False,
         num_classes: int = 1000, timm_twin: str = "", **fields) -> Preset:
    dim, heads = _SIZES[size] if size in _SIZES else (None, None)
    spec = VitSpec(patch=patch, dim=fields.pop("dim", dim), heads=fields.pop("heads", heads), **fields)
    return register(Preset(name, VisionTransformer, spec, VIT_TAXONOMY, img_size=img_size, tiny=tiny, paper=paper,
                           num_classes=num_classes, timm_twin=timm_twin))


_VIT = "ViT (Dosovitskiy et al. 2021)"
_DEIT = "DeiT (Touvron et al. 2021)"
_DEIT_D = "DeiT, distillation token (Touvron et al. 2021)"
_DINO = "DINO self-supervised ViT backbone (Caron et al. 2021); no head by default"

# timm twins: the same name (timm's default pretrained tag); DINO backbones are timm's '.dino' tags, and timm's
# only published vit_small_patch8_224 weights are DINO's (no head: ours stays initialised).
for _size in ("tiny", "small", "base"):
    _vit(f"vit_{_size}_patch16_224", _size, paper=_VIT, timm_twin=f"vit_{_size}_patch16_224")
    _vit(f"deit_{_size}_patch16_224", _size, paper=_DEIT, timm_twin=f"deit_{_size}_patch16_224")
    _vit(f"deit_{_size}_distilled_patch16_224", _size, paper=_DEIT_D, distilled=True,
         timm_twin=f"deit_{_size}_distilled_patch16_224")
for _size in ("small", "base"):
    _vit(f"vit_{_size}_patch8_224", _size, patch=8, paper=_VIT,
         timm_twin="vit_small_patch8_224.dino" if _size == "small" else "vit_base_patch8_224")
    _vit(f"dino_vit_{_size}_patch16", _size, paper=_DINO, num_classes=0, timm_twin=f"vit_{_size}_patch16_224.dino")

_vit("vit_tiny_test", "test", patch=8, img_size=32, tiny=True, dim=32, depth=2, heads=2, paper="test variant")
_vit("deit_tiny_distilled_test", "test", patch=8, img_size=32, tiny=True, dim=32, depth=2, heads=2, distilled=True,
     paper="test variant")
