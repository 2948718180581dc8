#!/usr/bin/env python
"""Which openclipart category folders can be held out for zero-shot classification: a folder's name must be a word
the text tower meets in captions of drawings filed *elsewhere*, or no model trained on the rest can know what the
prompt means (CLIP's zero-shot rests on class names its captions ground).

For every folder with at least ``--min-size`` distinct drawings: its size, the word of its name (the last part,
``_`` as spaces, a plural ``s`` dropped), how many drawings outside the folder have a caption containing that word
(whole-word prefix match, lower case) and how many inside do. ``--pick`` marks the folders the task's default held-out
list takes: sizes in [``--min-size``, ``--max-size``], ``outside >= --min-outside``, not a computer icon theme (whose
folders repeat each other's icons in another style) and a name that names what is drawn (``--skip``).

Usage: ``python benchmarks/clip_heldout.py [--min-size 15] [--max-size 160] [--min-outside 20]``
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from visionattn.data.captions import openclipart_captions  # noqa: E402

SKIP = ("unsorted", "recreation/games/cards/simple", "recreation/games/cards/white", "signs_and_symbols/map_symbols")
"""Folders whose name is not what their drawings show ('unsorted'; card styles 'simple' / 'white'; 'map symbols' is
in none of their captions)."""


def _inside(folders, folder: str) -> bool:
    return any(f == folder or f.startswith(folder + "/") for f in folders)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-size", type=int, default=15)
    parser.add_argument("--max-size", type=int, default=160)
    parser.add_argument("--min-outside", type=int, default=20)
    args = parser.parse_args(argv)
    items = openclipart_captions(64).items
    sizes = collections.Counter()
    for item in items:
        seen = set()
        for folder in item.folders:
            parts = folder.split("/")
            seen.update("/".join(parts[:d]) for d in range(1, len(parts) + 1))
        sizes.update(seen)
    rows = []
    for folder, n in sizes.items():
        if n < args.min_size:
            continue
        leaf = folder.rsplit("/", 1)[-1].replace("_", " ").lower()
        word = leaf[:-1] if leaf.endswith("s") and not leaf.endswith("ss") else leaf
        pattern = re.compile(r"\b" + re.escape(word))
        has = [any(pattern.search(c.lower()) for c in item.captions) for item in items]
        inside = [_inside(item.folders, folder) for item in items]
        outside = sum(h and not i for h, i in zip(has, inside, strict=True))
        own = sum(h and i for h, i in zip(has, inside, strict=True))
        pick = (n <= args.max_size and outside >= args.min_outside and not folder.startswith("computer/icons")
                and folder not in SKIP)
        rows.append((outside, folder, n, word, own, pick))
    print(f"{'folder':<45}{'drawings':>9}  {'word':<16}{'outside':>8}{'inside':>8}  pick")
    for outside, folder, n, word, own, pick in sorted(rows, reverse=True):
        print(f"{folder:<45}{n:>9}  {word:<16}{outside:>8}{own:>8}  {'yes' if pick else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
