"""The CLIP model: an image tower and a text tower projected into one embedding space, a learnable temperature; and
the converter that fills it from open_clip / OpenAI CLIP weights.

:class:`CLIPModel` takes any image backbone (``num_classes=0``: its pooled features) with a linear projection
``visual_proj`` (no bias) and the text tower (:class:`~visionattn.models.families.clip_text.TextTransformer`, whose
head is its projection). Its ``forward`` serves every use through one call, so DDP and FSDP see every forward:
``model(images=..., tokens=...)`` → :class:`ClipOutput` with L2-normalised embeddings of whatever was given and the
logit scale ``exp(logit_scale)`` clamped at ``max_logit_scale`` (CLIP: initialised at 1/0.07, clamped at 100).

Converter: :func:`convert_open_clip_state_dict` maps an open_clip ``CLIP`` state dict (OpenAI's layout: ``visual.*``
ViT, top-level text tower, ``logit_scale``) onto a CLIPModel whose image tower is a ViT with ``pre_norm`` (CLIP's
``ln_pre``); :func:`open_clip_architecture` reads the architecture back from such a state dict and
:func:`load_clip_checkpoint` builds the model and loads a local file (open_clip ``.bin``/``.pt``/``.safetensors``
state dicts, OpenAI's TorchScript ``.pt`` archives). The image tower of ViT-B-32 is
``create_model("vit_base_patch16_224", num_classes=0, patch=32, pre_norm=True, norm_eps=1e-5)``.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models.families.clip_text import TextSpec, TextTransformer, convert_block_key, convert_open_clip_text

__all__ = ["CLIPModel", "ClipOutput", "convert_open_clip_state_dict", "open_clip_architecture",
           "load_clip_checkpoint", "build_open_clip_vit", "OPENAI_MEAN", "OPENAI_STD"]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipOutput:
    """``image`` ``(B, E)`` / ``text`` ``(T, E)``: L2-normalised embeddings (None when not asked for);
    ``logit_scale``: the clamped scale (0-d)."""

    image: Tensor | None
    text: Tensor | None
    logit_scale: Tensor


def _pooled_width(visual: nn.Module) -> int:
    width = getattr(visual, "num_features", None)
    if width is None:
        width = visual.feature_info[-1].num_chs
    return int(width)


class CLIPModel(nn.Module):
    """visual: an image backbone built with ``num_classes=0`` (``visual(x)`` → pooled ``(B, C)``); text: a text
    tower whose ``num_classes`` is ``embed_dim``. Parameters: ``visual.*``, ``visual_proj.weight (E, C)``,
    ``text.*``, ``logit_scale`` (log of the scale)."""

    def __init__(self, visual: nn.Module, text: TextTransformer, logit_scale_init: float = 1 / 0.07,
                 max_logit_scale: float = 100.0):
        super().__init__()
        if getattr(visual, "num_classes", 0) != 0:
            raise ValueError(f"CLIPModel: the image tower must give pooled features (build it with num_classes=0), "
                             f"got num_classes={visual.num_classes}")
        if not text.num_classes:
            raise ValueError("CLIPModel: the text tower needs a projection (num_classes = embed_dim), got 0")
        if not 0 < logit_scale_init <= max_logit_scale:
            raise ValueError(f"CLIPModel: expected 0 < logit_scale_init <= max_logit_scale, got {logit_scale_init} "
                             f"and {max_logit_scale}")
        self.embed_dim = text.num_classes
        self.visual = visual
        self.visual_proj = nn.Linear(_pooled_width(visual), self.embed_dim, bias=False)
        nn.init.normal_(self.visual_proj.weight, std=_pooled_width(visual) ** -0.5)
        self.text = text
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale_init)))
        self.max_logit_scale = float(max_logit_scale)

    def no_weight_decay(self) -> set[str]:
        names = {f"visual.{n}" for n in getattr(self.visual, "no_weight_decay", set)()}
        names |= {f"text.{n}" for n in self.text.no_weight_decay()}
        return names | {"logit_scale"}

    def encode_image(self, images: Tensor, padding_mask: Tensor | None = None, normalize: bool = True) -> Tensor:
        """Images ``(B, 3, H, W)`` (padding mask ``(B, H, W)``) → ``(B, E)``."""
        features = self.visual.forward_features(images, padding_mask=padding_mask)
        x = self.visual_proj(self.visual.forward_head(features))
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: Tensor, normalize: bool = True) -> Tensor:
        """Token ids ``(T, L)`` (each with an end-of-text token; padding after it is never read) → ``(T, E)``."""
        x = self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def scale(self) -> Tensor:
        """``exp(logit_scale)`` clamped at ``max_logit_scale``."""
        return self.logit_scale.exp().clamp(max=self.max_logit_scale)

    def clamp_logit_scale_(self) -> None:
        """Keep the parameter in ``[0, log(max_logit_scale)]`` (open_clip does this after every update)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0, math.log(self.max_logit_scale))

    def forward(self, images: Tensor | None = None, tokens: Tensor | None = None,
                padding_mask: Tensor | None = None) -> ClipOutput:
        """Normalised embeddings of ``images`` and/or ``tokens`` and the logit scale."""
        if images is None and tokens is None:
            raise ValueError("CLIPModel: expected images and/or tokens, got neither")
        image = None if images is None else self.encode_image(images, padding_mask)
        text = None if tokens is None else self.encode_text(tokens)
        return ClipOutput(image, text, self.scale())


# -- open_clip / OpenAI weights ---------------------------------------------------------------------------------
def build_open_clip_vit(width: int, layers: int, patch: int, image_size: int, heads: int | None = None,
                        mlp_ratio: float = 4.0, act: str = "gelu") -> nn.Module:
    """Our ViT with open_clip's vision architecture (``ln_pre``, LayerNorm eps 1e-5, class-token pooling after
    ``ln_post``), pooled features (``num_classes=0``); ``heads`` defaults to ``width // 64`` as open_clip's."""
    from ...models import create_model

    return create_model("vit_base_patch16_224", num_classes=0, img_size=image_size, patch=patch, dim=width,
                        depth=layers, heads=heads or width // 64, mlp_ratio=mlp_ratio, pre_norm=True, norm_eps=1e-5,
                        act=act)


def _visual_timm_keys(state: dict[str, Tensor], width: int) -> dict[str, Tensor]:
    """open_clip ``visual.*`` (ViT) → timm's VisionTransformer names, which our ViT's converter reads."""
    out = {}
    for key, value in state.items():
        rest = key[len("visual."):]
        if rest == "conv1.weight":
            out["patch_embed.proj.weight"] = value
            out["patch_embed.proj.bias"] = value.new_zeros(width)  # CLIP's patch convolution has no bias
        elif rest == "class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif rest == "positional_embedding":
            out["pos_embed"] = value.reshape(1, *value.shape[-2:])
        elif rest.startswith(("ln_pre.", "ln_post.")):
            out[("norm_pre." if rest.startswith("ln_pre.") else "norm.") + rest.split(".", 1)[1]] = value
        elif rest.startswith("transformer.resblocks."):
            index, _, block = rest[len("transformer.resblocks."):].partition(".")
            out[f"blocks.{index}.{convert_block_key(block)}"] = value
        elif rest != "proj":
            out[rest] = value  # unknown: left for the loader to report
    return out


def convert_open_clip_state_dict(state: dict[str, Tensor], model: CLIPModel) -> dict[str, Tensor]:
    """An open_clip / OpenAI ``CLIP`` state dict → ``model``'s names. The image tower must be our ViT built like
    open_clip's (:func:`build_open_clip_vit`); ``visual.proj (C, E)`` becomes ``visual_proj.weight (E, C)``. OpenAI's
    extra entries (``input_resolution``, ``context_length``, ``vocab_size``) and the ``attn_mask`` buffer are
    dropped; a modified-ResNet image tower (``visual.layer1...``) is a ``ValueError``."""
    if any(k.startswith("visual.layer1.") for k in state):
        raise ValueError("the checkpoint's image tower is a modified ResNet (OpenAI RN50...); only ViT image towers "
                         "convert")
    if not hasattr(model.visual, "convert_state_dict"):
        raise ValueError(f"open_clip weights fill a ViT image tower, got {type(model.visual).__name__}")
    visual = {k: v for k, v in state.items() if k.startswith("visual.")}
    out = {f"visual.{k}": v for k, v in model.visual.convert_state_dict(
        _visual_timm_keys(visual, _pooled_width(model.visual))).items()}
    if "visual.proj" in state:
        out["visual_proj.weight"] = state["visual.proj"].t()
    out.update({f"text.{k}": v for k, v in convert_open_clip_text(state).items()})
    if "logit_scale" in state:
        out["logit_scale"] = state["logit_scale"].reshape(())
    return out


def _count(state: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def open_clip_architecture(state: dict[str, Tensor]) -> dict:
    """The architecture of an open_clip / OpenAI ViT CLIP state dict: ``vision`` (width, layers, patch, image_size,
    mlp_ratio), ``text`` (TextSpec fields) and ``embed_dim``; heads are ``width // 64`` (open_clip's rule)."""
    need = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
            "positional_embedding", "ln_final.weight", "text_projection"]
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"not an open_clip / OpenAI ViT CLIP state dict: missing {missing} (keys start with "
                         f"{sorted({k.split('.')[0] for k in state})[:10]})")
    conv = state["visual.conv1.weight"]  # (width, 3, patch, patch)
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    grid = math.isqrt(int(state["visual.positional_embedding"].shape[0]) - 1)
    fc = state["visual.transformer.resblocks.0.mlp.c_fc.weight"]
    text_width = int(state["ln_final.weight"].shape[0])
    text_fc = state["transformer.resblocks.0.mlp.c_fc.weight"]
    vision = {"width": width, "layers": _count(state, "visual.transformer.resblocks."), "patch": patch,
              "image_size": grid * patch, "mlp_ratio": fc.shape[0] / width}
    text = {"vocab_size": int(state["token_embedding.weight"].shape[0]),
            "context_length": int(state["positional_embedding"].shape[0]), "dim": text_width,
            "depth": _count(state, "transformer.resblocks."), "heads": text_width // 64,
            "mlp_ratio": text_fc.shape[0] / text_width}
    return {"vision": vision, "text": text, "embed_dim": int(state["text_projection"].shape[1])}


def _read_clip_file(path: Path) -> tuple[dict[str, Tensor], bool]:
    """(state dict, is an OpenAI TorchScript archive)."""
    from ...models.checkpoint import read_state_dict

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any("/code/" in n for n in z.namelist())
        if scripted:  # OpenAI's released .pt files are TorchScript archives: their state dict, never their code
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", FutureWarning)
                archive = torch.jit.load(str(path), map_location="cpu")
            return dict(archive.state_dict()), True
    return read_state_dict(path), False


def load_clip_checkpoint(path: str | Path, act: str | None = None, logit_scale_max: float = 100.0) -> CLIPModel:
    """A :class:`CLIPModel` with the weights of a local open_clip or OpenAI CLIP file (ViT image towers). ``act``:
    the MLP activation (default: ``quick_gelu`` for OpenAI's files, recognised by their ``input_resolution`` entry
    or TorchScript format; ``gelu`` otherwise: open_clip's ``-quickgelu`` models need ``act='quick_gelu'``)."""
    from ...models.checkpoint import check_state_dict

    path = Path(path)
    state, scripted = _read_clip_file(path)
    arch = open_clip_architecture(state)
    if act is None:
        act = "quick_gelu" if scripted or "input_resolution" in state else "gelu"
    v = arch["vision"]
    visual = build_open_clip_vit(v["width"], v["layers"], v["patch"], v["image_size"], mlp_ratio=v["mlp_ratio"],
                                 act=act)
    text = TextTransformer(TextSpec(**arch["text"], act=act), num_classes=arch["embed_dim"])
    model = CLIPModel(visual, text, max_logit_scale=logit_scale_max)
    converted = convert_open_clip_state_dict(state, model)
    check_state_dict(model, converted, f"CLIP checkpoint {str(path)!r}")
    model.load_state_dict(converted)
    return model.eval()
