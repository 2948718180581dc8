"""The attention explorer page (visionattn.analysis.explorer): the embedded data decodes back to the input within
the stated precision; bad input is refused with a clear error; and in headless Chromium a click on a pixel makes
the DISPLAYED map (read back from the canvas and from a screenshot) the right one, for two clicks, a head switch, a
layer switch, the mean of heads and a key press.

Synthetic layers with a known answer: layer 0 ("mirror", q/kv grid 6x9, 2 heads): head 0 attends around the point
mirror (hq-1-i, wq-1-j) of query cell (i, j), head 1 around the left-right mirror (i, wq-1-j). Layer 1 ("fixed",
q grid 4x6, kv grid 8x12, 3 heads): head h attends around a fixed key cell FIXED[h] whatever the query.

Set VISIONATTN_SCREENSHOT_DIR=docs/img to also save the page screenshot as explorer.png there (the docs image).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from browser import chromium, missing_browser, wait_js
from PIL import Image

from visionattn.analysis.explorer import ExplorerLayer, write_explorer

FIXED = [(1, 2), (6, 9), (3, 7)]  # layer 1: the key cell of each head (rows 0..7, cols 0..11)


def _image() -> np.ndarray:
    """A real photo (scikit-image's bundled cat), 96 x 144 uint8 RGB."""
    from skimage.data import chelsea

    return np.asarray(Image.fromarray(chelsea()).resize((144, 96), Image.BILINEAR))


def _blob(kv_grid, centre, rng, width=0.8) -> np.ndarray:
    """A non-negative map over kv cells peaking at ``centre``: a Gaussian bump plus seeded noise below it."""
    rows, cols = np.mgrid[0:kv_grid[0], 0:kv_grid[1]]
    d2 = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    m = np.exp(-d2 / (2 * width**2)) + 0.15 * rng.random(kv_grid)
    m[centre] += 0.5  # a clear unique maximum at the centre
    return (m / m.sum()).ravel()


def _layers(seed: int = 0) -> list[ExplorerLayer]:
    rng = np.random.default_rng(seed)
    hq, wq = 6, 9
    mirror = np.zeros((2, hq * wq, hq * wq), np.float32)
    for i in range(hq):
        for j in range(wq):
            mirror[0, i * wq + j] = _blob((hq, wq), (hq - 1 - i, wq - 1 - j), rng)
            mirror[1, i * wq + j] = _blob((hq, wq), (i, wq - 1 - j), rng)
    fixed = np.zeros((3, 4 * 6, 8 * 12), np.float32)
    for h, cell in enumerate(FIXED):
        for r in range(4 * 6):
            fixed[h, r] = _blob((8, 12), cell, rng) * rng.uniform(0.5, 2.0)  # rows need not sum to 1
    return [ExplorerLayer("mirror", (hq, wq), (hq, wq), mirror), ExplorerLayer("fixed", (4, 6), (8, 12), fixed)]


def _payload(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
    assert m is not None, "no data block in the page"
    return json.loads(m.group(1))


def _decode(layer: dict) -> np.ndarray:
    """Independent decoder of one embedded layer -> float64 (heads, nq, nk)."""
    heads, (hq, wq), (hk, wk) = layer["heads"], layer["q_grid"], layer["kv_grid"]
    codes = np.frombuffer(zlib.decompress(base64.b64decode(layer["codes"])), np.uint8).reshape(heads, hq * wq, -1)
    row_max = np.frombuffer(base64.b64decode(layer["row_max"]), "<f4").reshape(heads, hq * wq)
    assert codes.shape[-1] == hk * wk
    return codes.astype(np.float64) * row_max[..., None].astype(np.float64) / 255


def _lut() -> np.ndarray:
    import matplotlib

    return np.rint(matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.int64)


# --------------------------------------------------------------------------------------------- pure Python


def test_embedded_data_decodes_back_within_stated_precision(tmp_path):
    image, layers = _image(), _layers()
    path = write_explorer(tmp_path / "sub" / "page.html", image, layers, title="cat </script><b>")
    assert path == tmp_path / "sub" / "page.html" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["page.html"], "temporary file left behind"
    text = path.read_text(encoding="utf-8")
    assert "<title>cat &lt;/script&gt;&lt;b&gt;</title>" in text
    data = _payload(path)
    assert data["title"] == "cat </script><b>"
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image"]["png"]))).convert("RGB"))
    np.testing.assert_array_equal(png, image)
    assert (data["image"]["width"], data["image"]["height"]) == (144, 96)
    lut = np.frombuffer(base64.b64decode(data["colormap"]["rgb"]), np.uint8).reshape(256, 3)
    np.testing.assert_array_equal(lut, _lut())
    assert len(data["layers"]) == 2
    for layer, enc in zip(layers, data["layers"], strict=True):
        assert enc["name"] == layer.name and tuple(enc["q_grid"]) == layer.q_grid
        assert tuple(enc["kv_grid"]) == layer.kv_grid and enc["heads"] == layer.attn.shape[0]
        decoded = _decode(enc)
        bound = layer.attn.max(-1, keepdims=True).astype(np.float64) / 510 * (1 + 1e-6)
        err = np.abs(decoded - layer.attn)
        assert (err <= bound).all(), f"worst error / bound {(err / bound).max():.3f}"
        assert err.max() > 0, "quantisation is lossy: a zero error means the data were not quantised as stated"
        np.testing.assert_array_equal(decoded.argmax(-1), layer.attn.argmax(-1))


def test_zero_rows_stay_zero_and_overwrite_is_atomic(tmp_path):
    attn = np.zeros((1, 4, 4), np.float32)
    attn[0, 1] = [0.0, 3.0, 1.0, 0.5]
    layer = ExplorerLayer("z", (2, 2), (2, 2), attn)
    path = tmp_path / "p.html"
    path.write_text("old")
    write_explorer(path, np.full((4, 4, 3), 7, np.uint8), [layer])
    decoded = _decode(_payload(path)["layers"][0])
    np.testing.assert_array_equal(decoded[0, [0, 2, 3]], 0)
    np.testing.assert_allclose(decoded[0, 1], [0.0, 3.0, 3.0 * 85 / 255, 3.0 * 42 / 255], rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]


def _bad(**change):
    good = {"image": np.zeros((8, 8, 3), np.uint8),
            "layers": [ExplorerLayer("a", (2, 2), (2, 2), np.full((1, 4, 4), 0.25, np.float32))]}
    good.update(change)
    return good


def _layer(**kw):
    base = {"name": "a", "q_grid": (2, 2), "kv_grid": (2, 2), "attn": np.full((1, 4, 4), 0.25, np.float32)}
    base.update(kw)
    return [ExplorerLayer(**base)]


@pytest.mark.parametrize("kwargs, exc, words", [
    (_bad(image=np.zeros((8, 8), np.uint8)), ValueError, ["image", "(H, W, 3)", "(8, 8)"]),
    (_bad(image=np.zeros((8, 8, 3), np.float32)), TypeError, ["image", "uint8", "float32"]),
    (_bad(image=[[1]]), TypeError, ["image", "list"]),
    (_bad(layers=[]), ValueError, ["layers", "empty"]),
    (_bad(layers=_layer(attn=np.full((1, 4, 4), 0.25, np.float64))), TypeError, ["layers[0].attn", "float64"]),
    (_bad(layers=_layer(attn=np.full((1, 4, 5), 0.25, np.float32))), ValueError,
     ["layers[0].attn", "(heads, 4, 4)", "(1, 4, 5)"]),
    (_bad(layers=_layer(attn=np.full((1, 4, 4), np.nan, np.float32))), ValueError, ["finite", "16 NaN"]),
    (_bad(layers=_layer(attn=np.full((1, 4, 4), -0.5, np.float32))), ValueError, ["non-negative", "-0.5"]),
    (_bad(layers=_layer(q_grid=(2, 0))), ValueError, ["layers[0].q_grid", "(2, 0)"]),
    (_bad(layers=_layer(q_grid=(9, 1), attn=np.full((1, 9, 4), 0.25, np.float32))), ValueError,
     ["q_grid (9, 1)", "(8, 8)"]),
    (_bad(layers=[ExplorerLayer("a", (2, 2), (2, 2), np.full((1, 4, 4), 0.25, np.float32)), "x"]), TypeError,
     ["layers[1]", "ExplorerLayer", "str"]),
])
def test_bad_input_names_argument_expected_and_got(tmp_path, kwargs, exc, words):
    with pytest.raises(exc) as info:
        write_explorer(tmp_path / "x.html", **kwargs)
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"
    assert not (tmp_path / "x.html").exists()


# --------------------------------------------------------------------------------------------- browser


def _expected_index(values: np.ndarray) -> np.ndarray:
    """Colour index the page must paint for a displayed map: round(255 * v / max v)."""
    return np.rint(255 * values / values.max()).astype(np.int64)


def _shown(driver, lut: np.ndarray) -> tuple[dict, np.ndarray]:
    """(explorerState(), the colour index of each key cell read back from the displayed #heat canvas)."""
    state = driver.execute_script("return window.explorerState();")
    hk, wk = state["kvGrid"]
    size, rgba = driver.execute_script(
        "const c = document.getElementById('heat');"
        "return [[c.height, c.width], Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];")
    assert tuple(size) == (hk, wk), f"heat canvas is {size}, expected the kv grid {(hk, wk)}"
    rgb = np.asarray(rgba, np.int64).reshape(hk * wk, 4)[:, :3]
    index = ((rgb[:, None, :] - lut[None]) ** 2).sum(-1).argmin(-1)  # nearest colour-map entry
    return state, index.reshape(hk, wk)


def _click_pixel(driver, stage, x: int, y: int, size_hw) -> None:
    """A real pointer click at image pixel (x, y) of the CSS-scaled stage. WebDriver offsets are from the element's
    in-view centre point (the centre of its part inside the viewport), so that point is computed here."""
    from selenium.webdriver import ActionChains

    height, width = size_hw
    left, top, w, h, cx, cy = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height,"
        " Math.floor((Math.max(r.left, 0) + Math.min(r.right, window.innerWidth)) / 2),"
        " Math.floor((Math.max(r.top, 0) + Math.min(r.bottom, window.innerHeight)) / 2)];", stage)
    tx, ty = left + (x + 0.5) * w / width, top + (y + 0.5) * h / height  # client coordinates of the pixel centre
    ActionChains(driver).move_to_element_with_offset(stage, int(round(tx - cx)), int(round(ty - cy))).click().perform()


def _check(driver, lut, layers, image_hw, *, layer, head, pixel, key_cell):
    """The page shows ``layer``/``head`` for the query at ``pixel`` and its hottest displayed key is ``key_cell``."""
    height, width = image_hw
    L = layers[layer]
    hq, wq = L.q_grid
    cell = ((pixel[1] * hq) // height, (pixel[0] * wq) // width)
    r = cell[0] * wq + cell[1]
    heat = driver.find_element("id", "heat")
    assert (heat.get_attribute("data-layer"), heat.get_attribute("data-head"), heat.get_attribute("data-query")) == (
        str(layer), str(head), str(r))
    state, index = _shown(driver, lut)
    assert tuple(state["queryCell"]) == cell and state["query"] == r
    assert abs(state["queryPixel"][0] - pixel[0]) <= 1 and abs(state["queryPixel"][1] - pixel[1]) <= 1
    hottest = np.unravel_index(index.argmax(), index.shape)
    assert tuple(int(v) for v in hottest) == key_cell, f"displayed peak {hottest}, expected {key_cell}"
    assert (index == 255).sum() == 1
    rows = _decode_rows(L.attn[:, r])  # what the page should hold after quantisation
    want = rows.mean(0) if head == "mean" else rows[head]
    diff = np.abs(index.ravel() - _expected_index(want))
    assert diff.max() <= 1, f"displayed map differs from the expected one by up to {diff.max()} colour steps"
    np.testing.assert_allclose(state["values"], want, rtol=1e-5, atol=1e-7)


def _decode_rows(rows: np.ndarray) -> np.ndarray:
    """Quantise and dequantise rows (heads, nk) exactly as the stated encoding does."""
    mx = rows.max(-1, keepdims=True).astype(np.float64)
    return np.rint(255 * rows / mx) * mx / 255


def test_click_selects_query_and_displays_its_map_in_chromium(tmp_path):
    reason = missing_browser()
    if reason:
        pytest.skip(f"headless browser test needs Chromium and chromedriver: {reason}")
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    t0 = time.monotonic()
    image, layers = _image(), _layers()
    hw = image.shape[:2]
    page = write_explorer(tmp_path / "explorer.html", image, layers, title="attention explorer (synthetic maps)")
    lut = _lut()
    with chromium(tmp_path, width=1160, height=720) as driver:
        driver.get(page.resolve().as_uri())
        assert wait_js(driver, "document.getElementById('heat').dataset.ready !== '0'") is True
        assert driver.find_element("id", "heat").get_attribute("data-ready") == "1", \
            driver.find_element("id", "error").text
        stage = driver.find_element("id", "stage")
        assert stage.rect["width"] > 2 * image.shape[1], "the image should be shown scaled up"

        start = driver.execute_script("return window.explorerState().queryPixel;")  # middle of cell (3, 4)
        Select(driver.find_element("id", "head")).select_by_visible_text("head 0")  # head switch: mean -> 0
        _check(driver, lut, layers, hw, layer=0, head=0, pixel=start, key_cell=(2, 4))

        for pixel, key in (((37, 20), (4, 6)), ((122, 70), (1, 1))):  # cells (1, 2) and (4, 7) of the 6x9 grid
            _click_pixel(driver, stage, *pixel, hw)
            _check(driver, lut, layers, hw, layer=0, head=0, pixel=pixel, key_cell=key)

        driver.find_element("css selector", '.tile[data-head="1"]').click()  # head switch via the head grid
        _check(driver, lut, layers, hw, layer=0, head=1, pixel=(122, 70), key_cell=(4, 1))
        assert driver.find_element("css selector", '.tile[data-head="1"]').get_attribute("aria-pressed") == "true"
        shot = tmp_path / "explorer.png"
        driver.save_screenshot(str(shot))
        print(f"explorer screenshot: {shot}")
        if os.environ.get("VISIONATTN_SCREENSHOT_DIR"):
            out = Path(os.environ["VISIONATTN_SCREENSHOT_DIR"]) / "explorer.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
            print(f"explorer screenshot: {out}")

        Select(driver.find_element("id", "layer")).select_by_index(1)  # layer switch: same pixel, new 4x6 grid
        _check(driver, lut, layers, hw, layer=1, head=1, pixel=(122, 70), key_cell=FIXED[1])
        Select(driver.find_element("id", "head")).select_by_visible_text("mean of heads")
        state, index = _shown(driver, lut)
        want = _decode_rows(layers[1].attn[:, state["query"]]).mean(0)
        assert np.abs(index.ravel() - _expected_index(want)).max() <= 1
        np.testing.assert_allclose(state["values"], want, rtol=1e-5, atol=1e-7)  # the mean, not the sum

        stage.send_keys(Keys.ARROW_LEFT)  # keyboard: the query moves one cell left, head -> 2 with "." twice
        stage.send_keys(".", ".", ".")
        px = driver.execute_script("return window.explorerState().queryPixel;")
        assert driver.execute_script("return window.explorerState().queryCell;") == [2, 4]
        _check(driver, lut, layers, hw, layer=1, head=2, pixel=px, key_cell=FIXED[2])

        # What is on screen: full opacity, blocky, then sample the screenshot at each key cell's centre.
        driver.find_element("id", "opacity").send_keys(Keys.END)
        driver.find_element("id", "blocky").click()
        assert driver.execute_script("return getComputedStyle(document.getElementById('heat')).opacity;") == "1"
        seen = np.asarray(Image.open(io.BytesIO(stage.screenshot_as_png)).convert("RGB"), np.int64)
        hk, wk = layers[1].kv_grid
        sh, sw = seen.shape[:2]
        centres = seen[((np.arange(hk) + 0.5) * sh / hk).astype(int)][:, ((np.arange(wk) + 0.5) * sw / wk).astype(int)]
        on_screen = ((centres[:, :, None, :] - lut[None, None]) ** 2).sum(-1).argmin(-1)  # (hk, wk) colour index
        assert np.unravel_index(on_screen.argmax(), on_screen.shape) == FIXED[2]
        assert np.abs(centres[FIXED[2]] - lut[255]).max() <= 3
    assert time.monotonic() - t0 < 30, "browser test should stay well under 30 s"
