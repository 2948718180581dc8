"""The text side's tokenizer: open_clip's BPE (``open_clip.tokenizer.SimpleTokenizer``, whose 49,408-token vocabulary
ships in the ``open_clip_torch`` wheel), the one OpenAI's CLIP and open_clip's checkpoints were trained with.

``ClipTokenizer.encode(text)`` → ids ``[start, *bpe(text), end]`` cut to ``context_length`` (the last id of a cut
sequence is the end token, as open_clip's ``tokenize``) and whether it was cut. ``batch(list of id lists)`` pads with
0 to the longest one: the text tower's attention is causal and it pools at the end token, so padding beyond it is
never read, and a batch padded to its own longest caption equals open_clip's padding to the context length.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["ClipTokenizer", "get_tokenizer", "pad_token_ids"]


@functools.lru_cache(maxsize=1)
def _simple_tokenizer():
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError as err:
        raise ImportError(f"the clip task tokenizes with open_clip's BPE tokenizer: pip install open_clip_torch "
                          f"({err})") from err
    return SimpleTokenizer()


class ClipTokenizer:
    """open_clip's BPE with a context length (see the module docstring). ``vocab_size`` 49,408; ``sot_id`` 49,406,
    ``eot_id`` 49,407."""

    name = "openclip"

    def __init__(self, context_length: int = 77):
        if context_length < 2:
            raise ValueError(f"ClipTokenizer: context_length expected >= 2 (start and end tokens), got "
                             f"{context_length}")
        self.bpe = _simple_tokenizer()
        self.context_length = int(context_length)
        self.sot_id, self.eot_id = int(self.bpe.sot_token_id), int(self.bpe.eot_token_id)
        self.vocab_size = len(self.bpe.encoder)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one tokenizer per context length, kept for the process
    def encode(self, text: str) -> tuple[tuple[int, ...], bool]:
        """``(ids, truncated)`` for one caption."""
        ids = [self.sot_id, *self.bpe.encode(text), self.eot_id]
        if len(ids) <= self.context_length:
            return tuple(ids), False
        return (*ids[: self.context_length - 1], self.eot_id), True

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Captions → ``(T, L)`` int64 ids padded with 0 to the longest (``L <= context_length``)."""
        return pad_token_ids([self.encode(t)[0] for t in texts])

    def decode(self, ids: Sequence[int]) -> str:
        return self.bpe.decode([i for i in ids if i not in (0, self.sot_id, self.eot_id)]).strip()


@functools.lru_cache(maxsize=4)
def get_tokenizer(context_length: int = 77) -> ClipTokenizer:
    """The (cached) tokenizer for ``context_length``."""
    return ClipTokenizer(context_length)


def pad_token_ids(sequences: Sequence[Sequence[int]]) -> Tensor:
    """Id sequences → ``(T, L)`` int64, zero-padded on the right to the longest."""
    if not sequences:
        raise ValueError("pad_token_ids: expected at least one sequence, got none")
    out = torch.zeros(len(sequences), max(len(s) for s in sequences), dtype=torch.long)
    for i, ids in enumerate(sequences):
        out[i, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return out
