"""visionattn.data.composed: digit scenes, moving digits and digit phrases, composed from scikit-learn's real
handwritten digits. Seeded, deterministic, and checked for what the tasks rely on: disjoint train/val digit
images, masks and boxes that agree, occlusion limits, time-only labels, admissible phrases."""

from __future__ import annotations

import numpy as np
import pytest

from visionattn.data.composed import (
    DIRECTIONS,
    DigitPhrases,
    DigitScenes,
    MovingDigits,
    digit_pool,
    render_digit,
    scene_phrases,
)
from visionattn.data.composed.digit_pool import INK


def test_digit_pools_are_disjoint_stratified_and_fixed():
    train, val = digit_pool("train"), digit_pool("val")
    assert len(train) + len(val) == 1797 and not set(train.indices) & set(val.indices)
    assert np.bincount(val.labels).min() >= 40 and train.images.dtype == np.float32 and train.images.max() <= 1
    assert np.array_equal(digit_pool("val", 0.25, 0).indices, val.indices)
    assert not np.array_equal(digit_pool("val", 0.25, 1).indices, val.indices)
    with pytest.raises(ValueError, match="split expected 'train' or 'val'"):
        digit_pool("test")
    patch = render_digit(train.images[0], 24, 16)
    assert patch.shape == (24, 16) and 0 <= patch.min() and patch.max() <= 1


def _check_scene(s, H, W):
    n = len(s["labels"])
    masks, boxes = s["masks"], s["boxes"]
    assert masks.shape == (n, H, W) and masks.dtype == bool and boxes.shape == (n, 4) and boxes.dtype == np.float32
    assert (masks.sum(0) <= 1).all() and masks.any((1, 2)).all()  # disjoint, none empty
    for k in range(n):
        ys, xs = np.nonzero(masks[k])
        assert boxes[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    owner = np.where(masks.any(0), masks.argmax(0), -1)
    expected_semantic = np.where(owner >= 0, 1 + s["labels"][np.maximum(owner, 0)], 0)
    assert np.array_equal(s["semantic"], expected_semantic) and s["semantic"].dtype == np.uint8
    assert np.array_equal(s["panoptic"][..., 0], s["semantic"]) and np.array_equal(s["panoptic"][..., 1], owner + 1)


def test_digit_scenes_targets_are_consistent():
    ds = DigitScenes("train", 40, size=(64, 80), num_digits=(2, 4), scale=(2, 5))
    counts = []
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (64, 80) and s["image"].dtype == np.uint8
        _check_scene(s, 64, 80)
        assert ((s["image"] > 0) | ~s["masks"].any(0)).all()  # every ink pixel is drawn (plain background)
        counts.append(len(s["labels"]))
    assert min(counts) >= 1 and max(counts) <= 4 and np.mean(counts) > 2.5


def test_digit_scenes_are_deterministic_and_splits_use_disjoint_digits():
    a, b = DigitScenes("train", 5, seed=3), DigitScenes("train", 5, seed=3)
    for i in range(5):
        assert all(np.array_equal(a[i][k], b[i][k]) for k in a[i])
    assert not np.array_equal(a[0]["image"], DigitScenes("train", 5, seed=4)[0]["image"])
    assert np.array_equal(a[-1]["image"], a[4]["image"])
    with pytest.raises(IndexError):
        a[5]
    train_digits = {int(j) for i in range(30) for j in DigitScenes("train", 30)[i]["digit_index"]}
    val_digits = {int(j) for i in range(30) for j in DigitScenes("val", 30)[i]["digit_index"]}
    assert train_digits <= set(digit_pool("train").indices) and val_digits <= set(digit_pool("val").indices)


def test_occlusion_is_bounded_and_later_digits_win():
    ds = DigitScenes("train", 30, size=48, num_digits=(4, 4), scale=(3, 4), max_occlusion=0.3)
    pool = digit_pool("train")
    hidden_any = False
    for i in range(len(ds)):
        s = ds[i]
        for k, (j, scale) in enumerate(zip(s["digit_index"], s["scale"], strict=True)):
            side = max(1, round(8 * float(scale)))
            full_ink = int((render_digit(pool.images[np.flatnonzero(pool.indices == j)[0]], side, side) >= INK).sum())
            visible = int(s["masks"][k].sum())
            assert visible >= 0.7 * full_ink - 1e-6
            if k == len(s["labels"]) - 1:
                assert visible == full_ink  # the top digit is never hidden
            hidden_any |= visible < full_ink
    assert hidden_any  # overlap does happen
    none = DigitScenes("train", 10, size=48, num_digits=(3, 3), scale=(3, 4), max_occlusion=0.0)
    for i in range(10):
        s = none[i]
        for k in range(len(s["labels"])):
            assert s["masks"][k].sum() > 0


@pytest.mark.parametrize("background", ["noise", "texture"])
def test_digit_scene_backgrounds_and_rgb(background):
    s = DigitScenes("val", 3, size=40, scale=(2, 4), background=background, rgb=True)[0]
    assert s["image"].shape == (40, 40, 3) and s["image"].dtype == np.uint8
    bg = s["image"][~s["masks"].any(0)]
    assert np.quantile(bg, 0.9) <= round(0.35 * 255) + 1 and bg.std() > 0  # (faint digit edges are not ink)
    _check_scene(s, 40, 40)


def test_digit_scene_argument_errors():
    with pytest.raises(ValueError, match="scale expected"):
        DigitScenes(size=32, scale=(2, 6))
    with pytest.raises(ValueError, match="background expected one of"):
        DigitScenes(background="stars")
    with pytest.raises(ValueError, match="max_occlusion expected"):
        DigitScenes(max_occlusion=1.0)
    with pytest.raises(ValueError, match="num_digits expected"):
        DigitScenes(num_digits=(3, 2))


# ----------------------------------------------------------------------------------------------- moving digits
def _shift(a: np.ndarray, b: np.ndarray, max_speed: int) -> tuple[int, int]:
    """The torus shift (dy, dx) that best maps frame a onto frame b."""
    best, arg = -1.0, (0, 0)
    for dy in range(-max_speed, max_speed + 1):
        for dx in range(-max_speed, max_speed + 1):
            score = float((np.roll(a.astype(np.float32), (dy, dx), axis=(0, 1)) * b).sum())
            if score > best:
                best, arg = score, (dy, dx)
    return arg


def test_direction_is_solvable_from_two_frames():
    ds = MovingDigits("val", 40, task="direction", num_frames=6, size=24, scale=(2, 2.5), speed=(1, 3))
    for i in range(len(ds)):
        item = ds[i]
        assert item["video"].shape == (6, 24, 24) and item["video"].dtype == np.uint8
        dy, dx = _shift(item["video"][0], item["video"][1], 3)
        direction = {(0, 1): 0, (0, -1): 1, (1, 0): 2, (-1, 0): 3}[(int(np.sign(dy)), int(np.sign(dx)))]
        assert direction == item["label"] == item["directions"][0]
        assert np.array_equal((item["positions"][1] - item["positions"][0]) % 24, np.array([[dy, dx]]) % 24)


def test_direction_cannot_be_read_from_a_single_frame():
    """A classifier of single frames is at chance (4 classes; the labels are balanced), and the positions in a
    frame have the same spread for every direction (two frames solve it: the test above)."""
    from sklearn.linear_model import LogisticRegression

    kw = dict(task="direction", num_frames=4, size=16, scale=(1.5, 1.5), speed=(2, 2))
    train, val = MovingDigits("train", 800, **kw), MovingDigits("val", 300, **kw)

    def features(ds, frames):
        x = np.stack([ds[i]["video"][frames].reshape(-1) for i in range(len(ds))]).astype(np.float32) / 255
        return x, np.array([ds[i]["label"] for i in range(len(ds))])

    x, y = features(train, [1])
    xv, yv = features(val, [1])
    single = LogisticRegression(max_iter=300).fit(x, y).score(xv, yv)
    assert np.bincount(y).min() > 160 and single < 0.36
    positions = np.stack([train[i]["positions"][1, 0] for i in range(len(train))])
    for d in range(4):  # the position in a frame has the same spread for every direction
        assert positions[y == d].mean(0) == pytest.approx([7.5, 7.5], abs=1.3)


def test_order_task_structure_and_time_reversal():
    ds = MovingDigits("train", 60, task="order", num_frames=8)
    for i in range(len(ds)):
        item = ds[i]
        first, moving = item["first"], item["moving"]
        assert item["label"] == item["digits"][first] and item["digits"][0] != item["digits"][1]
        switch = int(moving[:, first].sum())
        assert 1 <= switch <= 6 and moving[:switch, first].all() and not moving[switch:, first].any()
        assert (moving[:, 1 - first] == ~moving[:, first]).all()
        steps = np.diff(item["positions"], axis=0)  # (T-1, 2, 2): no step while a digit is still
        assert not steps[~moving].any() and (steps[moving] != 0).any(axis=-1).all()
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert len(set(labels)) >= 8
    assert ds.classes[3] == "3 moves first" and len(MovingDigits(task="digit_direction").classes) == 40
    assert MovingDigits(task="direction").classes == [f"moving {d}" for d in DIRECTIONS]


def test_moving_digits_deterministic_noise_and_errors():
    a = MovingDigits("train", 3, task="digit_direction", noise=0.1, seed=5)
    assert np.array_equal(
        a[1]["video"], MovingDigits("train", 3, task="digit_direction", noise=0.1, seed=5)[1]["video"]
    )
    assert a[1]["label"] == 4 * a[1]["digits"][0] + a[1]["directions"][0]
    with pytest.raises(ValueError, match="task expected one of"):
        MovingDigits(task="speed")
    with pytest.raises(ValueError, match="num_frames expected >= 3"):
        MovingDigits(task="order", num_frames=2)
    with pytest.raises(ValueError, match="speed expected"):
        MovingDigits(speed=(0, 2))


# ----------------------------------------------------------------------------------------------- phrases
def test_scene_phrases_name_exactly_their_boxes():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 40, 20], [50, 30, 60, 40], [70, 0, 80, 10]], dtype=np.float32)
    labels = np.array([3, 7, 4, 4])
    got = {(p["template"], p["digit"]): p["boxes"] for p in scene_phrases(boxes, labels)}
    assert got[("digit", 3)] == [0] and got[("digit", 7)] == [1] and got[("pair", 4)] == [2, 3]
    assert got[("largest", -1)] == [1] and ("smallest", -1) not in got  # 100 vs 100: a tie
    assert got[("leftmost", -1)] == [0] and got[("rightmost", -1)] == [3]
    assert got[("left_of", 7)] == [0] and ("right_of", 3) not in got  # three digits are right of the 3
    assert got[("below", 7)] == [2] and ("above", 7) not in got and ("left_of", 3) not in got


def test_digit_phrases_spans_links_and_heldout_split():
    train = DigitPhrases("train", 60, phrases_per_caption=2, size=64, scale=(2, 4))
    heldout = DigitPhrases("heldout", 30, size=64, scale=(2, 4))
    held = heldout.heldout_combinations
    seen_templates = set()
    for ds, want_held in ((train, False), (heldout, True)):
        for i in range(len(ds)):
            item = ds[i]
            assert 1 <= len(item["phrases"]) <= ds.phrases_per_caption
            for p in item["phrases"]:
                start, end = p["span"]
                assert item["caption"][start:end] == p["text"]
                assert ((p["template"], p["digit"]) in held) == want_held
                assert all(0 <= b < len(item["labels"]) for b in p["boxes"])
                if p["template"] in ("digit", "pair"):
                    assert all(item["labels"][b] == p["digit"] for b in p["boxes"])
                    assert int((item["labels"] == p["digit"]).sum()) == len(p["boxes"])
                seen_templates.add(p["template"])
    assert len(seen_templates) >= 8
    assert set(heldout.scenes.pool.indices).isdisjoint(train.scenes.pool.indices)
    again = DigitPhrases("train", 60, phrases_per_caption=2, size=64, scale=(2, 4))
    assert again[7]["caption"] == train[7]["caption"] and again[7]["scene_index"] == train[7]["scene_index"]


def test_digit_phrases_heldout_templates_and_errors():
    ds = DigitPhrases("heldout", 10, heldout_templates=("rightmost",), heldout_combinations=(), size=64, scale=(2, 4))
    assert all(p["template"] == "rightmost" for i in range(10) for p in ds[i]["phrases"])
    train = DigitPhrases("train", 40, heldout_templates=("rightmost",), heldout_combinations=(), size=64, scale=(2, 4))
    assert all(p["template"] != "rightmost" for i in range(40) for p in train[i]["phrases"])
    with pytest.raises(ValueError, match="held-out templates"):
        DigitPhrases(heldout_combinations=(("largest", 3),))
    with pytest.raises(ValueError, match="needs held-out templates or combinations"):
        DigitPhrases("heldout", 5, heldout_combinations=())
    with pytest.raises(ValueError, match="found 0 scenes"):
        DigitPhrases("heldout", 5, heldout_combinations=(("pair", 3),), num_digits=(1, 1), max_scenes=20)


def test_digit_phrases_admissible_vocabulary_and_compose():
    """The public reads a grounding reader uses: each item's admissible phrases (range-checked), the sorted
    vocabulary over all items, and ``compose`` with given draws (first templates of the permutation, in order)."""
    ds = DigitPhrases("train", 20, phrases_per_caption=2, size=64, scale=(2, 4))
    texts = set()
    for i in range(len(ds)):
        scene_index, admissible = ds.admissible(i)
        assert admissible and ds[i]["scene_index"] == scene_index
        assert {p["text"] for p in ds[i]["phrases"]} <= {p["text"] for p in admissible}
        texts |= {p["text"] for p in admissible}
    assert ds.vocabulary_texts() == sorted(texts)
    assert ds.admissible(-1) == ds.admissible(19)
    with pytest.raises(IndexError, match="index 20 out of range for length 20"):
        ds.admissible(20)
    index = next(i for i in range(len(ds)) if len({p["template"] for p in ds.admissible(i)[1]}) >= 2)
    templates = sorted({p["template"] for p in ds.admissible(index)[1]})
    item = ds.compose(index, lambda n: list(range(n))[::-1], lambda n: n - 1)  # the last two templates, last phrase
    last = [[p for p in ds.admissible(index)[1] if p["template"] == t][-1] for t in templates[::-1][:2]]
    assert item["caption"] == ". ".join(p["text"] for p in last)
    assert [p["span"] for p in item["phrases"]] == [(0, len(last[0]["text"])),
                                                    (len(last[0]["text"]) + 2, len(item["caption"]))]
