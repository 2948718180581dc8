"""``visionattn viz`` through ``visionattn.cli.main``: a real training checkpoint (one update of a tiny ViT) or a
preset with random weights, image files in, PNG figures / explorer page out; bad input → exit 2 with a one-line
``visionattn viz: error: ...`` naming the file or value, the expected and the received."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.cli import main
from visionattn.data import DataBundle, build_transform
from visionattn.data.builtin import ArrayDataset

CLASSES = ["a", "b"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint written by the training loop: vit_tiny_test (2 blocks, 2 heads, 4x4 patches + CLS), 32 px."""
    from visionattn.train.config import load_config
    from visionattn.train.loop import Trainer

    cfg = load_config(overrides=["model.name=vit_tiny_test", "model.overrides={patch: 8, dim: 32, depth: 2, heads: 2}",
                                 "data.img_size=32", "schedule.epochs=1", "schedule.batch_size=4", "run.report=false",
                                 "run.num_workers=0", "run.log_every=1000", "recipe.ema=false"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    bundle = DataBundle(ArrayDataset(x, [0, 1] * 4, CLASSES, build_transform(cfg.data, True)),
                        ArrayDataset(x[:4], [0, 1] * 2, CLASSES, build_transform(cfg.data, False)), CLASSES, 32)
    run = tmp_path_factory.mktemp("run")
    from visionattn.tasks.classification.data import data_from_bundle

    trainer = Trainer(cfg, run_dir=run, data=data_from_bundle(bundle, cfg.data), log=lambda message: None)
    trainer.fit(until_step=1)
    return sorted(run.glob("ckpt-*.pt"))[-1]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_viz_checkpoint_writes_input_maps_masks_and_rollout(checkpoint, image, tmp_path, capsys, monkeypatch):
    import visionattn.analysis.explorer as explorer
    from visionattn.analysis.maps import capture_attention, query_rows
    from visionattn.data.transforms import denormalize
    from visionattn.train.evaluate import model_from_checkpoint

    seen = {}
    real = explorer.write_explorer

    def spy(path, img, layers, title=""):
        seen.update(img=img, layers=layers, title=title)
        return real(path, img, layers, title=title)

    monkeypatch.setattr(explorer, "write_explorer", spy)
    out = tmp_path / "viz"
    args = ["viz", str(checkpoint), str(image), "--layer", "all", "--query", "cls", "30,3", "--rollout", "--html",
            "--out", str(out)]
    assert main(args) == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == sorted(["photo_input.png", "photo_L00_cls.png", "photo_L00_x30y3.png", "photo_L01_cls.png",
                            "photo_L01_x30y3.png", "photo_rollout_cls.png", "photo_rollout_x30y3.png",
                            "photo_explorer.html"])
    assert all(Path(p).is_file() and Path(p).stat().st_size > 1000 for p in written)

    # the input image is the checkpoint's eval transform of the file, and the explorer got its rows
    model, cfg, _, _ = model_from_checkpoint(checkpoint)
    from visionattn.data import load_image

    x = build_transform(cfg.data, train=False)(load_image(image))
    expected = np.rint(denormalize(x, cfg.data).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(_png(out / "photo_input.png"), expected)
    assert seen["img"].shape == (32, 32, 3) and seen["img"].dtype == np.uint8
    assert [la.name for la in seen["layers"]] == ["0: stages.0.attn", "1: stages.1.attn"]
    capture = capture_attention(model, x[None])
    for index, layer in enumerate(seen["layers"]):
        assert layer.q_grid == (4, 4) and layer.kv_grid == (4, 4) and layer.attn.shape == (2, 16, 16)
        pixels = [(4 + 8 * j, 4 + 8 * i) for i in range(4) for j in range(4)]  # the centres of the 16 cells
        want = query_rows(capture, index, pixels)[0].flatten(-2).permute(1, 0, 2)  # (heads, 16, 16)
        torch.testing.assert_close(torch.from_numpy(layer.attn), want)
    figure = _png(out / "photo_L01_cls.png")
    assert figure.shape[1] > 3 * figure.shape[0] / 2  # image + mean + 2 heads side by side, masks beneath


def test_viz_model_with_random_weights_default_query_is_the_centre(image, tmp_path, capsys):
    out = tmp_path / "swin"
    assert main(["viz", "--model", "swin_test", str(image), "--layer", "0,-1", "--out", str(out)]) == 0
    names = sorted(Path(p).name for p in capsys.readouterr().out.split())
    assert names == ["photo_L00_x32y32.png", "photo_L05_x32y32.png", "photo_input.png"]
    assert _png(out / "photo_input.png").shape == (64, 64, 3)


@pytest.mark.parametrize("extra, message", [
    (["--layer", "7"], r"layer 7 out of range: vit_tiny_test has 2 .* \[0, 1\]"),
    (["--layer", "stages.9.attn"], r"layer 'stages.9.attn': expected one of \['stages.0.attn', 'stages.1.attn'\]"),
    (["--query", "32,0"], r"query pixel \(x=32, y=0\) is outside the 32x32 model input: expected 0 <= x < 32"),
    (["--query", "3x4"], "expected 'cls' or a pixel 'X,Y'"),
    (["--threshold", "1.5"], r"--threshold: expected a fraction in \(0, 1\], got 1.5"),
    (["--weights", "ema"], "holds no EMA weights"),
    (["--weights", "best.pt"], r"--weights with a checkpoint: expected one of \('auto', 'model', 'ema'\)"),
])
def test_viz_bad_values_exit_2_with_expected_and_got(checkpoint, image, tmp_path, capsys, extra, message):
    assert main(["viz", str(checkpoint), str(image), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visionattn viz: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_viz_bad_files_exit_2_naming_the_file(checkpoint, image, tmp_path, capsys):
    garbage = tmp_path / "broken.pt"
    garbage.write_bytes(b"not a checkpoint")
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    cases = [
        (["viz", str(checkpoint), str(tmp_path / "missing.png")], "missing.png: file not found"),
        (["viz", str(checkpoint), str(not_image)], "notes.png: not an image"),
        (["viz", str(tmp_path / "none.pt"), str(image)], "none.pt' does not exist"),
        (["viz", str(garbage), str(image)], "broken.pt' (holds pickled|.* cannot be read)"),
        (["viz", str(checkpoint)], "expected a CHECKPOINT then at least one IMAGE"),
        (["viz", "--model", "vit_tiny_tset", str(image)], "unknown model 'vit_tiny_tset'; did you mean vit_tiny_test"),
        (["viz", "--model", "vit_tiny_test", "--weights", str(tmp_path / "w.pt"), str(image)], "w.pt' does not"),
        (["viz", "--model", "swin_test", str(image), "--query", "cls"], "no class token"),
        (["viz", "--model", "swin_test", str(image), "--rollout"], "isotropic model .*swin_test's layer"),
    ]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("visionattn viz: error: ") and len(err.splitlines()) == 1, err
        assert re.search(message, err), (message, err)
