"""CLIP's text tower (Radford et al. 2021) as data: a :class:`TextSpec` → a :class:`TextTransformer`, its presets and
the converter from open_clip / OpenAI CLIP checkpoints.

The same Transformer block as the image backbones, on a 1-D sequence of tokens, with the :class:`~visionattn.ops.
Causal` pattern: token embedding + learned absolute positions → ``depth`` pre-norm blocks of causal self-attention
→ final LayerNorm (``ln_final``) → the features at the end-of-text token → a linear projection without bias into
the joint embedding space (the ``head``; ``num_classes`` is the embedding width).

Backbone contract: ``input_kind = "tokens"`` (``(B, N)`` integer ids, ``N <= context_length``; padding mask
``(B, N)``), ``forward_intermediates`` → ``(B, C, N)`` per block. Pooling needs the token ids (where the end-of-text
token is), so ``forward(tokens)`` finds it (:meth:`TextTransformer.eot_index`) and ``forward_head(features,
eot_index=...)`` takes it. Causal attention means the end-of-text features never see what follows, so padding
after it (to the batch's longest sequence, or to the context length as open_clip does) changes nothing, with or
without a padding mask.

Names follow open_clip's where they can (``token_embedding``, ``positional_embedding``, ``ln_final``); blocks are
:class:`~visionattn.layers.TransformerBlock` (``norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2``) in
``stages.i``, and ``text_projection (C, E)`` is ``head.weight (E, C)``. :meth:`TextTransformer.convert_state_dict`
maps open_clip's names (also inside a whole CLIP state dict, or under ``text.``) onto these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...layers.drop import drop_path_rates
from ...layers.transformer import TransformerBlock
from ...ops.patterns import Causal
from ..backbone import Backbone, FeatureInfo
from ..registry import Preset, register
from ..taxonomy import Taxonomy

__all__ = ["TextSpec", "TextTransformer", "OPEN_CLIP_EOT", "convert_open_clip_text"]

ACTS = ("gelu", "quick_gelu")
OPEN_CLIP_EOT = 49407  # "<end_of_text>" of open_clip's / OpenAI's BPE vocabulary (its largest id)


@dataclass(frozen=True)
class TextSpec:
    """A CLIP text transformer.

    vocab_size: token ids in ``[0, vocab_size)`` (49,408 for open_clip's BPE). context_length: the longest sequence
    (learned positions). dim: token channels. depth: blocks. heads: attention heads. mlp_ratio: MLP hidden =
    ``dim * mlp_ratio``. act: MLP activation, ``'gelu'`` or ``'quick_gelu'`` (OpenAI's checkpoints). norm_eps:
    LayerNorm epsilon (1e-5, PyTorch's default, as open_clip). eot_id: the end-of-text token id, where features are
    pooled (the first occurrence in each sequence). drop_path: stochastic depth of the last block. backend: operator
    backend of every block.
    """

    vocab_size: int = 49408
    context_length: int = 77
    dim: int = 512
    depth: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    act: str = "gelu"
    norm_eps: float = 1e-5
    eot_id: int = OPEN_CLIP_EOT
    drop_path: float = 0.0
    backend: str = "auto"

    def __post_init__(self):
        sizes = {"vocab_size": self.vocab_size, "context_length": self.context_length, "dim": self.dim,
                 "depth": self.depth, "heads": self.heads}
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"TextSpec: expected positive ints, got {bad}")
        if self.dim % self.heads:
            raise ValueError(f"TextSpec: dim {self.dim} is not divisible by heads {self.heads}")
        if self.act not in ACTS:
            raise ValueError(f"TextSpec.act must be one of {ACTS}, got {self.act!r}")
        if not 0 <= self.eot_id < self.vocab_size:
            raise ValueError(f"TextSpec.eot_id must be a token id in [0, {self.vocab_size}), got {self.eot_id}")


class TextTransformer(Backbone):
    """CLIP's text tower (see the module docstring). ``num_classes``: width of the joint embedding (the
    projection; 0 = no projection, ``forward`` gives the pooled ``dim`` features). ``img_size`` is accepted for the
    registry's builder call and ignored (the input is tokens)."""

    input_kind = "tokens"

    def __init__(self, spec: TextSpec, num_classes: int = 512, img_size=None):
        super().__init__()
        self.spec = spec
        C = self.num_features = self.embed_dim = spec.dim
        self.token_embedding = nn.Embedding(spec.vocab_size, C)
        self.positional_embedding = nn.Parameter(torch.empty(spec.context_length, C))
        rates = drop_path_rates(spec.drop_path, spec.depth)
        self.stages = nn.ModuleList(
            TransformerBlock(C, spec.heads, Causal(), mlp_ratio=spec.mlp_ratio, drop_path=rate,
                             norm_eps=spec.norm_eps, backend=spec.backend, dims=1, act_layer=spec.act)
            for rate in rates
        )
        self.feature_info = [FeatureInfo(C, 1, f"stages.{i}") for i in range(spec.depth)]
        self.ln_final = nn.LayerNorm(C, eps=spec.norm_eps)
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """open_clip's text init: embeddings N(0, 0.02) and N(0, 0.01); attention inputs N(0, C^-0.5); outputs
        N(0, C^-0.5 (2 depth)^-0.5); MLP input N(0, (2C)^-0.5); zero biases."""
        C, depth = self.spec.dim, self.spec.depth
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std, attn_std, fc_std = C ** -0.5 * (2 * depth) ** -0.5, C ** -0.5, (2 * C) ** -0.5
        for block in self.stages:
            for layer, std in ((block.attn.qkv, attn_std), (block.attn.proj, proj_std), (block.mlp.fc1, fc_std),
                               (block.mlp.fc2, proj_std)):
                nn.init.normal_(layer.weight, std=std)
                nn.init.zeros_(layer.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """A new projection ``dim → num_classes`` without bias, N(0, dim^-0.5) (Identity for 0)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be ≥ 0, got {num_classes}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.spec.dim, num_classes, bias=False) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.head.weight, std=self.spec.dim ** -0.5)

    def no_weight_decay(self) -> set[str]:
        return {"positional_embedding"}

    # -- Backbone contract ----------------------------------------------------------------------------
    def forward_stem(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Token ids ``(B, N)`` → ``(B, N, C)``: token embeddings + the first ``N`` learned positions."""
        n, vocab = x.shape[1], self.spec.vocab_size
        if n > self.spec.context_length:
            raise ValueError(f"{type(self).__name__}: {n} tokens per sequence, expected at most context_length "
                             f"{self.spec.context_length} (truncate when tokenizing)")
        low, high = (int(v) for v in torch.aminmax(x)) if x.numel() else (0, 0)
        if low < 0 or high >= vocab:
            raise ValueError(f"{type(self).__name__}: token ids must be in [0, {vocab}), got [{low}, {high}] (a "
                             f"tokenizer with a larger vocabulary?)")
        return self.token_embedding(x) + self.positional_embedding[:n].to(self.token_embedding.weight.dtype)

    def stage_padding_masks(self, padding_mask: Tensor) -> list[Tensor]:
        return [padding_mask] * len(self.stages)

    def stage_map(self, state: Tensor, index: int) -> Tensor:
        return state.transpose(1, 2)  # (B, C, N)

    def forward_norm(self, state: Tensor) -> Tensor:
        return self.ln_final(state)  # (B, N, C)

    def eot_index(self, tokens: Tensor) -> Tensor:
        """``(B,)`` int64: the position of each sequence's first end-of-text token (``spec.eot_id``); a
        ``ValueError`` naming the rows that have none."""
        found = tokens == self.spec.eot_id  # (B, N)
        missing = ~found.any(dim=1)
        if bool(missing.any()):
            rows = missing.nonzero().flatten().tolist()
            raise ValueError(f"{type(self).__name__}: sequences {rows[:10]} have no end-of-text token "
                             f"(id {self.spec.eot_id}); expected one per sequence (tokenize with the tower's "
                             f"tokenizer)")
        return found.int().argmax(dim=1)

    def forward_head(self, features: Tensor, pre_logits: bool = False, eot_index: Tensor | None = None) -> Tensor:
        """Features ``(B, N, C)`` → the end-of-text features ``(B, C)`` (``pre_logits``) or their projection
        ``(B, num_classes)``. ``eot_index`` ``(B,)``: where to pool (:meth:`eot_index` of the tokens)."""
        if eot_index is None:
            raise ValueError(f"{type(self).__name__}.forward_head pools at the end-of-text token: pass "
                             f"eot_index=model.eot_index(tokens), or call model(tokens)")
        pooled = features[torch.arange(features.shape[0], device=features.device), eot_index]  # (B, C)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Token ids ``(B, N)`` (padding mask ``(B, N)`` optional) → ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x, padding_mask), eot_index=self.eot_index(x))

    # -- checkpoint import ----------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """open_clip / OpenAI text keys → ours (see :func:`convert_open_clip_text`)."""
        return convert_open_clip_text(state_dict)


_BLOCK_KEYS = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "attn.qkv.weight",
               "attn.in_proj_bias": "attn.qkv.bias", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
               "mlp.c_proj": "mlp.fc2", "ls_1.gamma": "ls1.gamma", "ls_2.gamma": "ls2.gamma"}


def convert_block_key(rest: str) -> str:
    """One open_clip ``ResidualAttentionBlock`` parameter name (``ln_1.weight``, ``attn.in_proj_weight``...) →
    :class:`TransformerBlock`'s (``norm1.weight``, ``attn.qkv.weight``...); unknown names unchanged."""
    for theirs, ours in _BLOCK_KEYS.items():
        if rest == theirs or rest.startswith(theirs + "."):
            return ours + rest[len(theirs):]
    return rest


def convert_open_clip_text(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The text tower's keys of an open_clip ``CLIP`` (top level: ``token_embedding``, ``positional_embedding``,
    ``transformer.resblocks.i.*``, ``ln_final``, ``text_projection``) or ``CustomTextCLIP`` (the same under
    ``text.``) state dict → :class:`TextTransformer` names: ``transformer.resblocks.i`` → ``stages.i`` (open_clip's
    fused ``in_proj`` is our ``qkv``: the same ``[q; k; v]`` row order), ``text_projection (C, E)`` → ``head.weight
    (E, C)``. Keys of other parts (``visual.*``, ``logit_scale``, the ``attn_mask`` buffer, OpenAI's size entries)
    are dropped; our own names pass through."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("text."):
            key = key[len("text."):]
        if key.startswith("transformer.resblocks."):
            index, _, rest = key[len("transformer.resblocks."):].partition(".")
            out[f"stages.{index}.{convert_block_key(rest)}"] = value
        elif key == "text_projection":
            out["head.weight"] = value.t() if value.ndim == 2 else value
        elif key.startswith("text_projection."):  # an nn.Linear projection (proj_bias=True)
            out["head." + key[len("text_projection."):]] = value
        elif key.split(".")[0] in ("token_embedding", "positional_embedding", "ln_final", "stages", "head"):
            out[key] = value
    return out


# -- presets ---------------------------------------------------------------------------------------------
TEXT_TAXONOMY = Taxonomy(purity="attention", form="softmax", scales="single", geometry="sequence",
                         block="transformer")
_PAPER = "CLIP text transformer (Radford et al. 2021), causal attention"


def _text(name: str, num_classes: int, tiny: bool = False, paper: str = _PAPER, **fields) -> Preset:
    return register(Preset(name, TextTransformer, TextSpec(**fields), TEXT_TAXONOMY, img_size=fields.get(
        "context_length", 77), tiny=tiny, paper=paper, num_classes=num_classes))


_text("clip_text_test", 32, tiny=True, dim=32, depth=2, heads=2, paper="test variant")
_text("clip_text_tiny", 128, dim=128, depth=4, heads=4, paper=_PAPER + "; a CPU-sized tower")
_text("clip_text_base", 512, dim=512, depth=12, heads=8, paper=_PAPER + "; ViT-B-32's text tower")
