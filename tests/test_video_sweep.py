"""``visionattn bench sweep --video``: one layer of each ViViT variant and of 3-D windows on (T, S, S) tubelet grids.
Each variant's calls are the patterns its blocks run; the analytic FLOPs grow as claimed with the number of frames
(model 1 quadratically, windows and the factorised encoder's frames linearly, factorised self-attention between);
a tiny measured sweep writes its rows with the frame count."""

from __future__ import annotations

import csv
import math

import pytest

from visionattn.analysis.sweep import COLUMNS, Case, parse_patterns, video_calls
from visionattn.ops import Axial, Global, Window


def test_video_calls_are_the_blocks_patterns():
    assert video_calls("st", 8, 14, 4) == [(Global(), "softmax", (8, 14, 14), 4)]
    assert video_calls("fe", 8, 14, 4) == [(Window((1, 14, 14)), "softmax", (8, 14, 14), 4),
                                          (Global(), "softmax", (8,), 4)]
    assert video_calls("fsa", 8, 14, 4) == [(Window((1, 14, 14)), "softmax", (8, 14, 14), 4),
                                           (Axial(0), "softmax", (8, 14, 14), 4)]
    assert [h for *_, h in video_calls("fdp", 8, 14, 4)] == [2, 2]  # half the heads each
    assert video_calls("window3d", 2, 14, 4)[0][0] == Window((2, 7, 7))  # clipped to a short clip
    assert parse_patterns("st,fsa@reference", video=True) == [("st", "st", "auto"),
                                                              ("fsa@reference", "fsa", "reference")]
    with pytest.raises(ValueError, match=r"unknown video pattern 'global'; expected one of st, fe, fsa, fdp, window3d"):
        parse_patterns("global", video=True)


def _flops(name: str, frames: int, side: int = 14) -> int:
    return Case(name, name, "auto", side, heads=4, head_dim=32, frames=frames).predict().flops


@pytest.mark.parametrize("name, low, high", [("st", 1.99, 2.01), ("fe", 1.0, 1.01), ("window3d", 0.99, 1.01),
                                             ("fsa", 1.0, 1.3), ("fdp", 1.0, 1.3)])
def test_flops_grow_with_frames_as_claimed(name, low, high):
    """log-log slope of a layer's attention FLOPs from 32 to 128 frames of 14×14: 2 = quadratic, 1 = linear (the
    time axis of the factorised models costs T·S²·T: still under S⁴·T at these lengths)."""
    slope = math.log(_flops(name, 128) / _flops(name, 32)) / math.log(4)
    assert low <= slope <= high, slope
    # ViViT-B's 16 frame-tubelets of 14×14: model 1 has (16·196)² pairs, QKᵀ and AV 2·32 FLOPs each, per head
    assert _flops("st", 16) == 4 * (2 * 32 + 2 * 32) * (16 * 196) ** 2


def test_tiny_video_sweep_writes_rows_with_frames(tmp_path, capsys):
    from visionattn.cli import main

    out = tmp_path / "sweep"
    assert main(["bench", "sweep", "--video", "--patterns", "st,window3d", "--sizes", "2,4", "--side", "4",
                 "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames 2,4 of a 4x4 tubelet grid" in text and "window3d" in text
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [(r["pattern"], r["frames"], r["tokens"]) for r in rows] == [
        ("st", "2", "32"), ("st", "4", "64"), ("window3d", "2", "32"), ("window3d", "4", "64")]
    assert all(r["status"] == "ok" and float(r["fwdbwd_ms"]) > 0 for r in rows)
    assert (out / "sweep.png").stat().st_size > 1000
