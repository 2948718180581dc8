"""``visionattn denoise``: reads an image, runs the attention filters, writes the PNG that the library computes,
prints parameters / time / PSNR, compares with scikit-image, and fails with one clear line on bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from visionattn.analysis import classic, denoise_cli
from visionattn.analysis.classic import add_noise, bilateral, nl_means, psnr
from visionattn.cli import main

pytest.importorskip("skimage.restoration")


def _gray(h=17, w=23, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(60 + 6 * yy + 4 * xx + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)


def _save(path, array, **kwargs):
    Image.fromarray(array, **kwargs).save(path)
    return str(path)


def _psnrs(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"PSNR (-?[\d.]+) dB", text)]


def test_constants_match_the_library():
    assert denoise_cli.BORDER_MODES == classic.BORDER_MODES
    assert denoise_cli.PATCH_WEIGHTINGS == classic.PATCH_WEIGHTINGS


def test_nlmeans_with_noise_writes_the_library_result(tmp_path, capsys):
    image = _gray()
    src = _save(tmp_path / "in.png", image)
    out = tmp_path / "res.png"
    code = main(["denoise", src, "--out", str(out), "--add-noise", "0.1", "--seed", "3", "--patch-size", "5",
                 "--patch-distance", "4", "--h", "0.12", "--threads", "1"])
    assert code == 0
    text = capsys.readouterr().out
    assert "patch_size=5 patch_distance=4 h=0.12 sigma=0 patch_weighting=uniform mode=reflect" in text
    assert re.search(r"ours \(visionattn.ops.attention, 1 threads\): [\d.]+ s", text)
    clean = image / 255.0
    noisy = add_noise(clean, 0.1, seed=3)
    want = nl_means(noisy, patch_size=5, patch_distance=4, h=0.12)
    written = Image.open(out)
    assert written.mode == "L" and written.size == (23, 17)
    np.testing.assert_array_equal(np.asarray(written), np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8))
    p_in, p_out = _psnrs(text)
    assert p_in == pytest.approx(psnr(clean, noisy), abs=0.01)
    assert p_out == pytest.approx(psnr(clean, want), abs=0.01) and p_out > p_in


def test_bilateral_colour_compare_skimage(tmp_path, capsys, monkeypatch):
    rgb = np.stack([_gray(seed=1), _gray(seed=2), _gray(seed=3)], axis=-1)
    src = _save(tmp_path / "photo.png", rgb)
    monkeypatch.chdir(tmp_path)
    code = main(["denoise", src, "--method", "bilateral", "--sigma-color", "0.2", "--sigma-spatial", "1.5",
                 "--add-noise", "0.05", "--compare-skimage"])
    assert code == 0
    text = capsys.readouterr().out
    assert "sigma_spatial=1.5 sigma_color=0.2 win_size=None mode=mask" in text
    assert "skimage denoise_bilateral(sigma_spatial=1.5, sigma_color=0.2, win_size=None, mode='constant')" in text
    assert len(_psnrs(text)) == 3  # input, ours, skimage
    written = np.asarray(Image.open(tmp_path / "photo_bilateral.png"))  # the default output name
    noisy = add_noise(rgb / 255.0, 0.05, seed=0)
    want = bilateral(noisy, sigma_color=0.2, sigma_spatial=1.5)
    assert written.shape == rgb.shape
    np.testing.assert_array_equal(written, np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8))


def test_sixteen_bit_gray_stays_sixteen_bit_and_reference_psnr(tmp_path, capsys):
    clean = _gray(seed=4).astype(np.uint16) * 257
    noisy = np.clip(clean.astype(np.int64) + np.random.default_rng(0).integers(-4000, 4000, clean.shape), 0, 65535)
    src = _save(tmp_path / "noisy16.png", noisy.astype(np.uint16))
    ref = _save(tmp_path / "clean16.png", clean)
    out = tmp_path / "out16.png"
    code = main(["denoise", src, "--reference", ref, "--out", str(out), "--patch-size", "3", "--patch-distance", "2",
                 "--h", "0.08"])
    assert code == 0
    written = Image.open(out)
    assert written.mode.startswith("I") and np.asarray(written).max() > 255
    want = nl_means(noisy.astype(np.uint16), patch_size=3, patch_distance=2, h=0.08)
    np.testing.assert_array_equal(np.asarray(written).astype(np.int64), np.rint(np.clip(want, 0, 1) * 65535))
    p_in, p_out = _psnrs(capsys.readouterr().out)
    assert p_out == pytest.approx(psnr(clean, want), abs=0.01)


def test_both_methods_and_figure(tmp_path, capsys):
    src = _save(tmp_path / "g.png", _gray(seed=5))
    figure = tmp_path / "fig.png"
    code = main(["denoise", src, "--method", "both", "--out", str(tmp_path / "r.png"), "--figure", str(figure),
                 "--add-noise", "0.1", "--patch-distance", "3", "--compare-skimage"])
    assert code == 0
    text = capsys.readouterr().out
    assert (tmp_path / "r_nlmeans.png").is_file() and (tmp_path / "r_bilateral.png").is_file()
    assert len(_psnrs(text)) == 5 and "denoise_nl_means(" in text and "denoise_bilateral(" in text
    with Image.open(figure) as fig:
        assert fig.width > 2 * fig.height  # 5 panels side by side


@pytest.mark.parametrize(
    "argv, match",
    [
        (["denoise", "{tmp}/missing.png"], r"IMAGE '.*missing\.png': file not found"),
        (["denoise", "{tmp}/bad.png"], r"IMAGE '.*bad\.png': cannot read it as an image"),
        (["denoise", "skimage:lena"], r"unknown scikit-image image, expected one of camera"),
        (["denoise", "{tmp}/ok.png", "--patch-size", "4"], r"patch_size must be an odd int ≥ 1.*got 4"),
        (["denoise", "{tmp}/ok.png", "--h", "0"], r"h must be a finite number > 0"),
        (["denoise", "{tmp}/ok.png", "--method", "bilateral", "--win-size", "6"], r"win_size must be an odd int"),
        (["denoise", "{tmp}/ok.png", "--out", "{tmp}/x.jpg"], r"--out must be a \.png path"),
        (["denoise", "{tmp}/ok.png", "--reference", "{tmp}/small.png"], r"--reference .* has shape"),
        (["denoise", "{tmp}/ok.png", "--reference", "{tmp}/ok.png", "--add-noise", "0.1"], r"either --add-noise"),
        (["denoise", "{tmp}/ok.png", "--add-noise", "-1"], r"--add-noise must be a finite number ≥ 0, got -1"),
        (["denoise", "{tmp}/ok.png", "--threads", "0"], r"--threads must be ≥ 1"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv, match):
    _save(tmp_path / "ok.png", _gray(h=9, w=8))
    _save(tmp_path / "small.png", _gray(h=5, w=5))
    (tmp_path / "bad.png").write_text("not a png")
    monkeypatch.chdir(tmp_path)
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("visionattn denoise: error: ") and err.count("\n") == 1
    assert re.search(match, err), err
    assert not list(tmp_path.glob("ok_*.png"))  # nothing written


def test_help_registers_the_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["denoise", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--compare-skimage" in text and "--patch-distance" in text and "--sigma-color" in text
