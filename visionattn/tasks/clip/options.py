"""The CLIP task's ``task:`` section: the text tower, the joint embedding, the temperature, the held-out categories
and the zero-shot evaluation sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..base import TaskOptions

__all__ = ["ClipOptions", "DEFAULT_HELDOUT", "DEFAULT_TEMPLATES", "ZERO_SHOT_SETS"]

ZERO_SHOT_SETS = ("heldout", "fashion_mnist", "digits")

DEFAULT_HELDOUT = ["shapes/arrows", "special/patterns", "signs_and_symbols/weather", "education/books", "plants/trees",
                   "shapes/flowchart", "recreation/holiday", "tools", "computer/buttons"]
"""openclipart category folders held out of training for zero-shot classification: every folder of 20-160 drawings
whose name is a word that at least 20 captions of drawings filed elsewhere contain (``benchmarks/clip_heldout.py``
lists them), less computer icon themes (which repeat each other's icons) and names that do not say what is drawn. A
class name the training captions never ground cannot be zero-shot classified: the first choice, 15 concrete folders
(birds, fish, fruit, ...; names in 1-12 outside captions each), scored 3.5% for 6.7% chance. ``folder=name`` names a
class, else it is the folder's last part with ``_`` as spaces."""

DEFAULT_TEMPLATES = ["{}", "a drawing of {}", "clip art of {}", "an icon of {}", "{}. Keywords: {}"]
"""Prompt templates whose embeddings are averaged per class (CLIP's ensemble): the plain name, three phrasings of
"a picture of", and the shape of the openclipart captions (``title. Keywords: ...``). Fixed before any held-out
result was seen."""


@dataclass
class ClipOptions(TaskOptions):
    """text_model / text_overrides: the text tower preset (``visionattn.models``, ``input_kind='tokens'``) and spec
    overrides; the image tower is the ``model:`` section (any image preset, its pooled features projected).
    embed_dim: width of the joint embedding. context_length: longest token sequence (longer captions are truncated
    and counted). logit_scale_init: the initial temperature inverse (1/0.07); max_logit_scale: its clamp (100).
    heldout_categories: openclipart folders (``folder`` or ``folder=class name``) held out of training and
    validation for zero-shot classification. zero_shot: the sets evaluated (``heldout``, ``fashion_mnist``,
    ``digits``). zero_shot_limit: images per package set (the first N of Fashion-MNIST's test split / of the digits).
    zero_shot_invert: show the package sets as dark strokes on white (the drawings' look) instead of white on
    black. templates: prompt templates (``{}`` is the class name), averaged per class. max_per_caption: keep at most
    this many training images per identical caption (0 = all): CLIP balanced its data per query the same way; in
    openclipart 1,225 training drawings share the caption "gramastar. Keywords: stars, shapes, magick, geometry",
    and identical captions in one batch are negatives that no model can tell apart."""

    embed_dim: int = 128
    text_model: str = "clip_text_tiny"
    text_overrides: dict[str, Any] = field(default_factory=dict)
    context_length: int = 77
    logit_scale_init: float = 1 / 0.07
    max_logit_scale: float = 100.0
    heldout_categories: list[str] = field(default_factory=lambda: list(DEFAULT_HELDOUT))
    zero_shot: list[str] = field(default_factory=lambda: list(ZERO_SHOT_SETS))
    zero_shot_limit: int = 2000
    zero_shot_invert: bool = True
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    max_per_caption: int = 0

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.embed_dim >= 1, "embed_dim", ">= 1", self.embed_dim)
        need(self.context_length >= 2, "context_length", ">= 2 (start and end tokens)", self.context_length)
        need(self.logit_scale_init > 0, "logit_scale_init", "> 0", self.logit_scale_init)
        need(self.max_logit_scale >= self.logit_scale_init, "max_logit_scale", f">= logit_scale_init "
             f"({self.logit_scale_init:g})", self.max_logit_scale)
        unknown = [z for z in self.zero_shot if z not in ZERO_SHOT_SETS]
        need(not unknown, "zero_shot", f"names among {ZERO_SHOT_SETS}", self.zero_shot)
        need(self.zero_shot_limit >= 1, "zero_shot_limit", ">= 1", self.zero_shot_limit)
        need(self.max_per_caption >= 0, "max_per_caption", ">= 0 (0 = keep all)", self.max_per_caption)
        need(bool(self.templates) and all("{" in t for t in self.templates), "templates",
             "a non-empty list of strings with a {} slot", self.templates)
        bad = [c for c in self.heldout_categories if not c.split("=")[0].strip() or c.count("=") > 1]
        need(not bad, "heldout_categories", "'folder' or 'folder=class name' entries", bad)
        return out

    def heldout_classes(self) -> list[tuple[str, str]]:
        """``(folder, class name)`` per held-out category, in order."""
        out = []
        for entry in self.heldout_categories:
            folder, _, name = entry.partition("=")
            folder = folder.strip().strip("/")
            out.append((folder, name.strip() or folder.rsplit("/", 1)[-1].replace("_", " ")))
        return out
