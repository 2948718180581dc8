"""The grounding text tokenizer: a Hugging Face ``tokenizers`` WordLevel model whose vocabulary is trained on the
training captions (``WordLevelTrainer``), with lower-casing, whitespace/punctuation splitting and digits split
one per token ("4s" → "4", "s", so "the two 4s" shares its "4" with "the 4").

open_clip's BPE (the clip task's tokenizer) gives no character offsets, and M-DETR's targets are character spans,
so this tokenizer is used because ``tokenizers`` returns each token's ``(start, end)`` offsets, which
:meth:`GroundingTokenizer.positive_map` turns into token positions: a token belongs to a span when their character
ranges overlap (M-DETR's ``create_positive_map``). Ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[END]`` 2 (appended, the text
tower's end-of-text id), words from 3. The vocabulary is a plain list (checkpoint ``meta`` keeps it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["GroundingTokenizer", "SPECIALS"]

SPECIALS = ("[PAD]", "[UNK]", "[END]")


def _build(vocab: Sequence[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    return tok


class GroundingTokenizer:
    """``encode(caption)`` → ``(ids, offsets)``: ids end with ``[END]``; offsets ``(start, end)`` per id (the end
    token gets ``(len, len)``). ``max_len`` caps the ids (the end token stays last); a caption cut there loses the
    spans past it (``positive_map`` raises for them)."""

    def __init__(self, vocab: Sequence[str], max_len: int = 32):
        vocab = list(vocab)
        if tuple(vocab[:3]) != SPECIALS or len(set(vocab)) != len(vocab):
            raise ValueError(f"GroundingTokenizer: expected a vocabulary starting with {SPECIALS} and no repeats, got "
                             f"{vocab[:5]}... ({len(vocab)} entries, {len(vocab) - len(set(vocab))} repeated)")
        if max_len < 2:
            raise ValueError(f"GroundingTokenizer: max_len expected >= 2, got {max_len}")
        self.vocab, self.max_len = vocab, int(max_len)
        self.pad_id, self.unk_id, self.end_id = 0, 1, 2
        self._tok = _build(vocab)

    @classmethod
    def train(cls, captions: Iterable[str], max_len: int = 32) -> GroundingTokenizer:
        """A vocabulary of every word of ``captions`` (``tokenizers.trainers.WordLevelTrainer``)."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                     pre_tokenizers.Digits(individual_digits=True)])
        tok.train_from_iterator(list(captions), trainers.WordLevelTrainer(special_tokens=list(SPECIALS),
                                                                          min_frequency=1))
        by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        return cls([w for w, _ in by_id], max_len)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, caption: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self._tok.encode(caption)
        ids, offsets = list(enc.ids)[: self.max_len - 1], [tuple(o) for o in enc.offsets][: self.max_len - 1]
        return ids + [self.end_id], offsets + [(len(caption), len(caption))]

    def positive_map(self, offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], caption: str = "",
                     ) -> Tensor:
        """Bool ``(len(offsets),)``: the tokens whose character range overlaps one of ``spans``. A span that covers
        no token (cut by ``max_len``, or only spaces) is a ``ValueError`` naming it."""
        out = torch.zeros(len(offsets), dtype=torch.bool)
        for s, e in spans:
            hit = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
            if not hit:
                raise ValueError(f"span ({s}, {e}) of caption {caption!r} covers no token (tokens cut at max_len "
                                 f"{self.max_len}?)")
            out[hit] = True
        return out

    def __call__(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Captions → ``(ids (B, L) int64, padding (B, L) bool)``, padded with ``[PAD]`` to the longest."""
        encoded = [self.encode(c)[0] for c in captions]
        L = max(len(e) for e in encoded)
        ids = torch.zeros(len(encoded), L, dtype=torch.int64)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e)
        return ids, ids == self.pad_id
