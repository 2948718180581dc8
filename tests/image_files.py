"""Image files for the data tests, written with PIL/numpy: one writer per edge case (kind -> writer(dir) -> path).
Convertible kinds (CONVERTED) load as RGB; bad kinds (BAD) raise BadImage with the given reason."""

from __future__ import annotations

import numpy as np
from PIL import Image

S = 16  # img_size for file-based tests: small and fast


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(16, 240, (h, w, 3), dtype=np.uint8)


def _gray(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(16, 240, (h, w), dtype=np.uint8)


def _save_rgb(path, seed: int, h: int = 12, w: int = 10):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(h, w, seed)).save(path)
    return path


# ---------------------------------------------------------------------------------------------- edge-case files

# kind -> writer(dir) -> path. Convertible kinds load as RGB; bad kinds raise BadImage.


def _png_bytes(seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(_rgb(24, 20, seed)).save(buf, format="PNG")
    return buf.getvalue()


def _w_gray(d):
    Image.fromarray(_gray(9, 11, 1), mode="L").save(d / "gray.png")
    return d / "gray.png"


def _w_rgba(d):
    arr = np.dstack([_rgb(8, 8, 2), np.zeros((8, 8), np.uint8)])
    arr[:, 4:, 3] = 255  # left half fully transparent, right half opaque
    Image.fromarray(arr, mode="RGBA").save(d / "rgba.png")
    return d / "rgba.png"


def _w_la(d):
    arr = np.dstack([_gray(6, 6, 3), np.full((6, 6), 255, np.uint8)])
    arr[0, 0, 1] = 0
    Image.fromarray(arr, mode="LA").save(d / "la.png")
    return d / "la.png"


def _palette_image(seed: int) -> Image.Image:
    idx = np.random.default_rng(seed).integers(0, 4, (10, 10), dtype=np.uint8)
    idx[0, 0], idx[0, 1] = 0, 1
    img = Image.frombytes("P", (10, 10), idx.tobytes())
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    return img


def _w_palette(d):
    _palette_image(4).save(d / "palette.png")
    return d / "palette.png"


def _w_palette_transparent(d):
    _palette_image(5).save(d / "palette_t.gif", transparency=0)  # palette index 0 (red) is transparent
    return d / "palette_t.gif"


def _w_16bit(d):
    arr = np.random.default_rng(6).integers(0, 65536, (7, 9)).astype(np.uint16)
    arr[0, 0], arr[0, 1], arr[0, 2] = 65535, 257 * 100, 0
    Image.fromarray(arr).save(d / "sixteen.png")
    return d / "sixteen.png"


def _w_cmyk(d):
    arr = np.random.default_rng(7).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    arr[0, 0] = (0, 0, 0, 0)  # no ink: white
    arr[0, 1] = (255, 0, 0, 0)  # full cyan: (0, 255, 255)
    Image.frombytes("CMYK", (8, 8), arr.tobytes()).save(d / "cmyk.tif")
    return d / "cmyk.tif"


def _w_cmyk_jpeg(d):
    arr = np.random.default_rng(8).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    Image.frombytes("CMYK", (16, 16), arr.tobytes()).save(d / "cmyk.jpg")
    return d / "cmyk.jpg"


def _w_one_pixel(d):
    Image.fromarray(_rgb(1, 1, 9)).save(d / "one.png")
    return d / "one.png"


def _w_tall(d):
    Image.fromarray(_rgb(500, 1, 10)).save(d / "tall.png")  # 1 wide, 500 high
    return d / "tall.png"


def _w_wide(d):
    Image.fromarray(_rgb(1, 500, 11)).save(d / "wide.jpg")
    return d / "wide.jpg"


def _w_bilevel(d):
    Image.fromarray(_gray(8, 8, 12) > 128).save(d / "bilevel.png")
    return d / "bilevel.png"


def _w_float(d):
    arr = np.random.default_rng(13).random((5, 6), dtype=np.float32)
    arr[0, 0], arr[0, 1] = 0.5, 2.0  # 2.0 is clipped to 1.0
    Image.fromarray(arr, mode="F").save(d / "float.tif")
    return d / "float.tif"


def _w_exif_rotated(d):
    img = Image.fromarray(_rgb(10, 20, 14))  # 20 wide, 10 high
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    img.save(d / "rotated.jpg", exif=exif)
    return d / "rotated.jpg"


def _w_truncated_png(d):
    data = _png_bytes(15)
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    return d / "truncated.png"


def _w_truncated_jpeg(d):
    import io

    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64, 16)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    (d / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    return d / "truncated.jpg"


def _w_corrupt_png(d):
    data = bytearray(_png_bytes(17))
    i = data.find(b"IDAT")
    data[i + 10 : i + 40] = bytes(range(30))  # scramble the compressed stream
    (d / "corrupt.png").write_bytes(bytes(data))
    return d / "corrupt.png"


def _w_text_as_png(d):
    (d / "notes_renamed.png").write_text("this is not an image\n" * 5)
    return d / "notes_renamed.png"


def _w_empty_file(d):
    (d / "empty.jpg").write_bytes(b"")
    return d / "empty.jpg"


CONVERTED = {
    "gray": (_w_gray, (11, 9)),
    "rgba": (_w_rgba, (8, 8)),
    "la": (_w_la, (6, 6)),
    "palette": (_w_palette, (10, 10)),
    "palette_transparent": (_w_palette_transparent, (10, 10)),
    "16bit": (_w_16bit, (9, 7)),
    "cmyk": (_w_cmyk, (8, 8)),
    "cmyk_jpeg": (_w_cmyk_jpeg, (16, 16)),
    "one_pixel": (_w_one_pixel, (1, 1)),
    "tall_1x500": (_w_tall, (1, 500)),
    "wide_500x1": (_w_wide, (500, 1)),
    "bilevel": (_w_bilevel, (8, 8)),
    "float": (_w_float, (6, 5)),
    "exif_rotated": (_w_exif_rotated, (10, 20)),
}
BAD = {
    "truncated_png": (_w_truncated_png, "truncated"),
    "truncated_jpeg": (_w_truncated_jpeg, "truncated"),
    "corrupt_png": (_w_corrupt_png, "decode failed"),
    "text_as_png": (_w_text_as_png, "not an image"),
    "empty_file": (_w_empty_file, "not an image"),
}
