"""CLIP data: the three caption formats (CSV, ``.txt`` sidecars, WebDataset shards) with several captions per image
and every bad input the issue names (empty and over-long captions, an image without a caption, a caption without an
image, undecodable text and images) skipped or counted, each named; the split by group with held-out category
folders; batching; the retrieval metric against a brute-force twin and chance; the zero-shot prompt ensemble."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
from image_files import _save_rgb
from PIL import Image

from visionattn.data.captions import (
    CaptionedItem,
    CaptionSource,
    read_caption_csv,
    read_caption_folder,
    read_caption_shards,
)
from visionattn.tasks.clip.data import (
    CaptionedImages,
    collate_clip,
    split_items,
    stack_tokens,
    tokenize_captions,
)
from visionattn.tasks.clip.metrics import RetrievalMetric, chance_recall, recall_at

BAD_UTF8 = "caf\xe9 au lait".encode("latin-1")  # 0xe9 alone is not UTF-8


def _reasons(source: CaptionSource) -> dict[str, str]:
    return dict(source.skipped)


# -- CSV -----------------------------------------------------------------------------------------------------------
def test_csv_several_captions_and_bad_rows(tmp_path):
    for name, seed in (("a.png", 0), ("b.png", 1), ("lonely.png", 2)):
        _save_rgb(tmp_path / "img" / name, seed)
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    lines = [b"license,filepath,text", b"cc0,img/a.png,a red square", b"cc0,img/a.png,  another   caption ",
             b"cc0,img/a.png,a red square", b"cc0,img/b.png,a blue thing", b"cc0,img/b.png,", b"cc0,img/lonely.png,",
             b"cc0,img/missing.png,a ghost", b"cc0,img/broken.png,broken", b"cc0,img/b.png," + BAD_UTF8]
    csv = tmp_path / "captions.csv"
    csv.write_bytes(b"\n".join(lines) + b"\n")
    source = read_caption_csv(csv, check_size=16)
    assert [(i.name, i.captions) for i in source.items] == [
        ("img/a.png", ("a red square", "another caption")), ("img/b.png", ("a blue thing",))]
    reasons = _reasons(source)
    assert reasons[f"{csv} line 6"] == "empty caption for 'img/b.png'"
    assert reasons["img/lonely.png"] == "image without caption (every caption of it was empty)"
    assert reasons["img/missing.png"] == "caption without image: file not found"
    assert reasons["img/broken.png"].startswith("not an image")
    assert reasons[f"{csv} line 10"] == "undecodable text: expected UTF-8, got byte 0xe9 at offset 17"
    assert source.image(0).size == (10, 12)


def test_csv_without_header_and_its_errors(tmp_path):
    _save_rgb(tmp_path / "x.png", 0)
    (tmp_path / "plain.csv").write_text("x.png,one\nx.png,two\n")
    assert read_caption_csv(tmp_path / "plain.csv").items[0].captions == ("one", "two")
    (tmp_path / "three.csv").write_text("x.png,one,extra\n")
    with pytest.raises(ValueError, match=r"line 1: expected 2 columns \(image,caption\) or a header naming them"):
        read_caption_csv(tmp_path / "three.csv")
    (tmp_path / "half.csv").write_text("path,label\nx.png,one\n")
    with pytest.raises(ValueError, match="the header \\['path', 'label'\\] has no a caption column"):
        read_caption_csv(tmp_path / "half.csv")
    with pytest.raises(ValueError, match="expected a CSV file of image,caption rows, got nothing"):
        read_caption_csv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="has no rows"):
        read_caption_csv(tmp_path / "empty.csv")


# -- folder with sidecars ------------------------------------------------------------------------------------------
def test_folder_sidecars(tmp_path):
    _save_rgb(tmp_path / "cats" / "tom.png", 0)
    (tmp_path / "cats" / "tom.txt").write_text("a grey cat\n\n  chasing a mouse \n")
    _save_rgb(tmp_path / "no_text.png", 1)
    (tmp_path / "orphan.txt").write_text("a caption without its picture")
    _save_rgb(tmp_path / "empty.png", 2)
    (tmp_path / "empty.txt").write_text(" \n\n")
    _save_rgb(tmp_path / "latin.png", 3)
    (tmp_path / "latin.txt").write_bytes(BAD_UTF8)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "bad.txt").write_text("unreadable picture")
    source = read_caption_folder(tmp_path, check_size=16)
    assert [(i.name, i.captions) for i in source.items] == [("cats/tom.png", ("a grey cat", "chasing a mouse"))]
    reasons = _reasons(source)
    assert reasons[str(tmp_path / "orphan.txt")] == "caption without image: no image file of that name"
    assert reasons["no_text.png"] == "image without caption: no no_text.txt beside it"
    assert reasons[str(tmp_path / "empty.txt")] == "empty caption"
    assert reasons[str(tmp_path / "latin.txt")] == "undecodable text: expected UTF-8, got byte 0xe9 at offset 3"
    assert reasons["bad.jpg"].startswith(("decode failed", "not an image"))
    assert len(source.skipped) == 5
    with pytest.raises(ValueError, match="expected a directory, got nothing"):
        read_caption_folder(tmp_path / "missing")


# -- WebDataset shards -----------------------------------------------------------------------------------------
def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_shards(tmp_path):
    import webdataset as wds

    samples = [
        {"__key__": "s0", "png": _png(0), "txt": b"one caption\nand a second"},
        {"__key__": "s1", "jpg": b"\xff\xd8 not a jpeg", "txt": b"bad picture"},
        {"__key__": "s2", "txt": b"no picture at all"},
        {"__key__": "s3", "png": _png(3)},
        {"__key__": "s4", "png": _png(4), "txt": BAD_UTF8},
        {"__key__": "s5", "png": _png(5), "json": b'{"captions": ["from json", "  "]}'},
        {"__key__": "s6", "png": _png(6), "txt": b"   "},
    ]
    for shard, part in (("a", samples[:4]), ("b", samples[4:])):
        with wds.TarWriter(str(tmp_path / f"data-{shard}.tar")) as sink:
            for sample in part:
                sink.write(sample)
    for path in (tmp_path, str(tmp_path / "data-{a,b}.tar")):
        source = read_caption_shards(path)
        assert [(i.name, i.captions) for i in source.items] == [("data-a.tar:s0", ("one caption", "and a second")),
                                                               ("data-b.tar:s5", ("from json",))]
        reasons = _reasons(source)
        assert reasons["data-a.tar:s1"].startswith(("decode failed", "not an image"))
        assert reasons["data-a.tar:s2"] == "caption without image: the sample has no image entry"
        assert reasons["data-a.tar:s3"] == "image without caption: the sample has no .txt or .json entry"
        assert reasons["data-b.tar:s4"] == "undecodable text: expected UTF-8, got byte 0xe9 at offset 3"
        assert reasons["data-b.tar:s6"] == "empty caption"
        assert np.asarray(source.image(1)).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="expected .tar files, got missing"):
        read_caption_shards(tmp_path / "nope.tar")


# -- tokenizing, splitting, batching ------------------------------------------------------------------------------
def _source(items: list[CaptionedItem]) -> CaptionSource:
    array = np.random.default_rng(0).integers(0, 255, (len(items), 8, 8, 3), dtype=np.uint8)
    return CaptionSource(items, "test", array=array)


def test_overlong_captions_are_truncated_and_counted():
    from visionattn.tasks.clip.tokenizer import get_tokenizer

    source = _source([CaptionedItem(0, ("short", "long " * 30), "g0", "first"), CaptionedItem(1, ("ok",), "g1",
                                                                                             "second")])
    truncated: list = []
    ids = tokenize_captions(source, [0, 1], get_tokenizer(16), truncated)
    assert [len(t) for t in ids[0]] == [3, 16] and ids[0][1][-1] == 49407
    assert truncated == [("first", "caption of 32 tokens truncated to the context length 16")]


def test_split_keeps_groups_and_holds_out_categories():
    items = [CaptionedItem(i, (f"c{i}",), f"g{i // 2}", f"item{i}", (f"food/{'fruit' if i < 4 else 'bread'}",))
             for i in range(40)]
    items.append(CaptionedItem(40, ("copy",), "g0", "copy_of_fruit", ("people",)))  # group g0 is held out
    items.append(CaptionedItem(41, ("both",), "g99", "both", ("food/fruit/apples", "animals/birds")))
    source = _source(items)
    split = split_items(source, [("food/fruit", "fruit"), ("animals/birds", "birds")], 0.25, seed=0)
    assert split.heldout == [0, 1, 2, 3] and split.heldout_labels == [0] * 4
    assert dict(split.skipped) == {
        "copy_of_fruit": "a copy of a held-out drawing filed elsewhere: kept out of training",
        "both": "filed in several held-out categories ['fruit', 'birds']: no single label"}
    train_groups = {items[i].group for i in split.train}
    val_groups = {items[i].group for i in split.val}
    assert not train_groups & val_groups and split.val and split.train
    assert sorted(split.train + split.val) == list(range(4, 40))
    assert split_items(source, [("food/fruit", "fruit")], 0.25, seed=0).val != split_items(
        source, [("food/fruit", "fruit")], 0.25, seed=1).val  # the seed moves the split
    with pytest.raises(ValueError, match=r"no drawing is filed in \['food/frut'\]"):
        split_items(source, [("food/frut", "fruit")], 0.25, seed=0)


def test_samples_and_batches():
    source = _source([CaptionedItem(0, ("a", "b c"), "g0", "i0"), CaptionedItem(1, ("d",), "g1", "i1")])
    ids = [[(49406, 320, 49407), (49406, 322, 320, 49407)], [(49406, 323, 49407)]]
    to_tensor = lambda im: torch.as_tensor(np.array(im), dtype=torch.float32).permute(2, 0, 1)  # noqa: E731
    val = CaptionedImages(source, [0, 1], ids, to_tensor, train=False)
    assert val.num_texts == 3 and list(val.text_offsets) == [0, 2, 3]
    batch = collate_clip([val[0], val[1]])
    assert batch["image"].shape == (2, 3, 8, 8) and "padding_mask" not in batch
    assert [t.shape for t in batch["tokens"]] == [(2, 4), (1, 3)] and batch["index"].tolist() == [0, 1]
    stacked, owner = stack_tokens(batch["tokens"])
    assert stacked.tolist() == [[49406, 320, 49407, 0], [49406, 322, 320, 49407], [49406, 323, 49407, 0]]
    assert owner.tolist() == [0, 0, 1]
    train = CaptionedImages(source, [0, 1], ids, to_tensor, train=True)
    torch.manual_seed(0)
    drawn = {tuple(train[0]["tokens"][0].tolist()) for _ in range(20)}
    assert len(drawn) == 2 and all(train[0]["tokens"].shape[0] == 1 for _ in range(3))
    with pytest.raises(ValueError, match="every sample needs the keys"):
        collate_clip([val[0], {"image": torch.zeros(3, 8, 8), "index": 1}])


# -- retrieval metric --------------------------------------------------------------------------------------------
def _brute_force(sim: np.ndarray, owner: np.ndarray) -> tuple[list[int], list[int]]:
    """Ranks by sorting (ties broken in favour of the right answer, as strict counting does)."""
    n, t = sim.shape
    i2t = []
    for i in range(n):
        order = sorted(range(t), key=lambda j: (-sim[i, j], owner[j] != i))
        i2t.append(min(order.index(j) for j in range(t) if owner[j] == i))
    t2i = []
    for j in range(t):
        order = sorted(range(n), key=lambda i: (-sim[i, j], i != owner[j]))
        t2i.append(order.index(owner[j]))
    return i2t, t2i


def test_recall_ranks_equal_a_brute_force_twin():
    g = torch.Generator().manual_seed(0)
    owner = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    sim = torch.randn(5, 8, generator=g)
    i2t, t2i = recall_at(sim, owner)
    want_i2t, want_t2i = _brute_force(sim.numpy(), owner.numpy())
    assert i2t.tolist() == want_i2t and t2i.tolist() == want_t2i
    perfect = torch.full((5, 8), -1.0)
    perfect[owner, torch.arange(8)] = 1.0
    assert recall_at(perfect, owner)[0].tolist() == [0] * 5 and recall_at(perfect, owner)[1].tolist() == [0] * 8


def test_retrieval_metric_accumulates_shards_and_chance():
    g = torch.Generator().manual_seed(1)
    offsets = [0, 2, 3, 6]  # 3 images with 2, 1 and 3 captions
    images = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=-1)
    metric = RetrievalMetric(offsets, width=4)
    metric.update({"image": images[[2]], "text": [texts[3:6]]}, {"index": torch.tensor([2])})
    metric.update({"image": images[:2], "text": [texts[0:2], texts[2:3]]}, {"index": torch.tensor([0, 1])})
    from visionattn.comm import LOCAL

    metric.reduce(LOCAL)
    result = metric.compute()
    owner = torch.tensor([0, 0, 1, 2, 2, 2])
    i2t, t2i = recall_at(images @ texts.t(), owner)
    assert result.metrics["i2t_r1"] == pytest.approx(float((i2t < 1).float().mean()))
    assert result.metrics["t2i_r1"] == pytest.approx(float((t2i < 1).float().mean()))
    assert result.metrics["mean_recall"] == pytest.approx(np.mean([v for k, v in result.metrics.items()
                                                                    if k != "mean_recall"]))
    chance = chance_recall(np.array([0, 0, 1, 2, 2, 2]), 3)
    assert chance["t2i_r1"] == pytest.approx(1 / 3)
    assert chance["i2t_r1"] == pytest.approx(np.mean([2 / 6, 1 / 6, 3 / 6]))
    # i2t R@5 by enumeration: a random ranking of 6 captions, does any of image 0's 2 land in the top 5?
    hits = sum(any(p.index(c) < 5 for c in (0, 1)) for p in itertools.permutations(range(6)))
    assert chance_recall(np.array([0, 0, 1, 2, 2, 2]), 3)["i2t_r5"] == pytest.approx(
        np.mean([hits / math.factorial(6), 5 / 6, 1.0]))
    twice = RetrievalMetric(offsets, width=4)
    for _ in range(2):
        twice.update({"image": images, "text": [texts[0:2], texts[2:3], texts[3:6]]}, {"index": torch.arange(3)})
    with pytest.raises(ValueError, match=r"every item must be evaluated once; items \[0, 1, 2\] were seen"):
        twice.compute()


def test_prompt_ensemble_is_the_mean_of_normalised_prompts():
    from visionattn.models import create_model
    from visionattn.tasks.clip.model import CLIPModel
    from visionattn.tasks.clip.tokenizer import get_tokenizer
    from visionattn.tasks.clip.zeroshot import class_embeddings

    torch.manual_seed(0)
    model = CLIPModel(create_model("vit_tiny_test", num_classes=0), create_model("clip_text_test", num_classes=16))
    tok = get_tokenizer(77)
    templates = ["a {}", "{} and {}"]
    got = class_embeddings(model, ["cat", "dog"], templates, tok, torch.device("cpu"))
    for row, name in zip(got, ["cat", "dog"], strict=True):
        prompts = model.eval().encode_text(tok([f"a {name}", f"{name} and {name}"]))
        torch.testing.assert_close(row, torch.nn.functional.normalize(prompts.mean(0), dim=0))


def test_cap_per_caption_keeps_a_stable_few_of_each_caption():
    from visionattn.tasks.clip.data import cap_per_caption

    items = [CaptionedItem(i, ("same",) if i < 7 else (f"own {i}",), f"g{i}", f"item{i}") for i in range(10)]
    source = _source(items)
    kept, dropped = cap_per_caption(source, list(range(10)), 3, seed=0)
    assert dropped == 4 and len(kept) == 6 and kept == sorted(kept) and {7, 8, 9} <= set(kept)
    assert sum(1 for i in kept if i < 7) == 3
    assert cap_per_caption(source, list(range(10)), 3, seed=0) == (kept, 4)  # stable
    assert cap_per_caption(source, list(range(10)), 0, seed=0) == (list(range(10)), 0)


def test_top5_picture_pools_identical_captions():
    from visionattn.tasks.clip.report import _distinct_top

    texts = ["gramastar", "gramastar", "a cat", "gramastar", "a dog"]
    logits = torch.tensor([1.0, 1.0, 2.0, 1.0, 0.0])
    probs = logits.softmax(0)
    top = _distinct_top(texts, logits, own={"a cat"}, k=2)
    assert [t for t, _, _ in top] == ["(×3) gramastar", "a cat"] and [r for _, _, r in top] == [False, True]
    assert top[0][1] == pytest.approx(100 * float(probs[[0, 1, 3]].sum()))
