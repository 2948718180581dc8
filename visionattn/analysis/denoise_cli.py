"""``visionattn denoise``: non-local means and the bilateral filter, run as attention (``visionattn.analysis.classic``).

::

    visionattn denoise IMAGE [--method nlmeans|bilateral|both] [--out PATH.png] [--figure PATH.png]
                       [--patch-size 7 --patch-distance 11 --h 0.1 --sigma 0 --patch-weighting uniform]
                       [--sigma-spatial 1 --sigma-color STD --win-size N] [--mode MODE]
                       [--add-noise SIGMA --seed 0 | --reference CLEAN] [--compare-skimage] [--threads N]

``IMAGE`` is a file Pillow reads, or ``skimage:NAME`` for an image bundled with scikit-image (``skimage:camera``,
``skimage:astronaut``, ...). Grayscale (``L``, ``1``, ``LA``) stays grayscale, 16-bit grayscale stays 16-bit, ``F``
is taken as float, everything else becomes 8-bit RGB (alpha composited on white). Pixels are scaled to [0, 1].

``--add-noise SIGMA`` adds seeded Gaussian noise (clipped to [0, 1]) and measures PSNR against the clean image;
``--reference CLEAN`` gives a clean image of the same size instead. ``--compare-skimage`` runs scikit-image's
``denoise_nl_means`` / ``denoise_bilateral`` with the same parameters and prints its time and PSNR and the largest
difference to ours. The result is written as PNG (default ``STEM_METHOD.png`` in the current directory): 8-bit
grayscale or RGB, 16-bit grayscale for 16-bit input. ``--figure`` writes the comparison panels
(input / ours / skimage per method, PSNR in the titles, a zoomed crop below).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

SKIMAGE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "cat",
                  "immunohistochemistry")
METHODS = ("nlmeans", "bilateral", "both")
BORDER_MODES = ("mask", "reflect", "symmetric", "edge", "wrap", "constant")  # = classic.BORDER_MODES (tested)
PATCH_WEIGHTINGS = ("uniform", "gaussian", "skimage")  # = classic.PATCH_WEIGHTINGS (tested)
LABELS = {"nlmeans": "NL-means", "bilateral": "bilateral"}


def add_parser(sub) -> None:
    """Register the ``denoise`` subcommand on an argparse sub-parser collection."""
    p = sub.add_parser(
        "denoise", help="non-local means / bilateral filter written as attention (vs scikit-image)",
        description="Denoise an image with non-local means or the bilateral filter, both run through "
        "visionattn.ops.attention: a Neighborhood pattern (the search window), the Gaussian weights as logits, the "
        "pixels as values (visionattn.analysis.classic). Prints the parameters, the time and, with --add-noise or "
        "--reference, the PSNR; --compare-skimage runs scikit-image with the same parameters.")
    p.add_argument("image", metavar="IMAGE", help="image file, or skimage:NAME (" + ", ".join(SKIMAGE_IMAGES) + ")")
    p.add_argument("--method", choices=METHODS, default="nlmeans", help="filter (default nlmeans)")
    p.add_argument("--out", metavar="PATH.png", help="result PNG (default STEM_METHOD.png; with --method both, "
                   "_nlmeans/_bilateral are added to the stem)")
    p.add_argument("--figure", metavar="PATH.png", help="also write a comparison figure")
    nlm = p.add_argument_group("non-local means")
    nlm.add_argument("--patch-size", type=int, default=7, help="odd patch side p (default 7)")
    nlm.add_argument("--patch-distance", type=int, default=11, help="search radius s: window 2s+1 (default 11)")
    nlm.add_argument("--h", type=float, default=0.1, help="filtering parameter, image units (default 0.1)")
    nlm.add_argument("--sigma", type=float, default=0.0, help="noise std as skimage's sigma (default 0)")
    nlm.add_argument("--patch-weighting", choices=PATCH_WEIGHTINGS, default="uniform",
                     help="patch distance: uniform mean, gaussian (skimage fast_mode=False) or skimage "
                          "(its fast mode's (p-1)^2 box); default uniform")
    bil = p.add_argument_group("bilateral")
    bil.add_argument("--sigma-spatial", type=float, default=1.0, help="spatial sigma in pixels (default 1)")
    bil.add_argument("--sigma-color", type=float, default=None,
                     help="range sigma, image units (default: the noisy image's std, as skimage)")
    bil.add_argument("--win-size", type=int, default=None, help="odd window (default max(5, 2*ceil(3*sigma)+1))")
    p.add_argument("--mode", choices=BORDER_MODES, default=None,
                   help="borders: mask = window clipped to the image, else numpy.pad mode "
                        "(default reflect for nlmeans, mask for bilateral)")
    p.add_argument("--add-noise", type=float, metavar="SIGMA", help="add Gaussian noise of this std (image units)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--reference", metavar="CLEAN", help="clean image for PSNR (instead of --add-noise)")
    p.add_argument("--compare-skimage", action="store_true", help="also run scikit-image with the same parameters")
    p.add_argument("--threads", type=int, help="torch threads for the run (default: torch's)")
    p.set_defaults(func=_cmd_denoise)


def _error(message: str) -> int:
    print(f"visionattn denoise: error: {message}", file=sys.stderr)
    return 2


def _cmd_denoise(args) -> int:
    import torch

    previous = torch.get_num_threads()
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be ≥ 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        return _run(args)
    except (ValueError, TypeError, OSError) as err:
        return _error(str(err).splitlines()[0])
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------- image files
def read_image(spec: str, what: str = "IMAGE"):
    """``spec`` (a path or ``skimage:NAME``) → (array uint8/uint16/float32 ``(H, W)`` or ``(H, W, 3)``, a short
    description). ValueError naming the file for a missing or unreadable image."""
    import numpy as np

    if spec.startswith("skimage:"):
        name = spec.split(":", 1)[1]
        if name not in SKIMAGE_IMAGES:
            known = ", ".join(SKIMAGE_IMAGES)
            raise ValueError(f"{what} {spec!r}: unknown scikit-image image, expected one of {known}")
        from skimage import data

        array = np.asarray(getattr(data, name)())
        return array, f"{name} (scikit-image)"
    from PIL import Image, ImageOps

    from ..data.images import to_rgb

    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{what} {spec!r}: {'file not found' if not path.exists() else 'not a regular file'}")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001 - Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ValueError(f"{what} {spec!r}: cannot read it as an image ({type(err).__name__}: {err})") from err
    mode = img.mode
    if mode in ("L", "1", "LA"):
        array = np.asarray(img.convert("L"))
    elif mode.startswith("I"):
        array = np.clip(np.asarray(img).astype(np.int64), 0, 65535).astype(np.uint16)
    elif mode == "F":
        array = np.asarray(img, dtype=np.float32)
    else:
        array = np.asarray(to_rgb(img, path))
    return array, f"{path.name} ({mode})"


def _describe(array) -> str:
    kind = "gray" if array.ndim == 2 else f"{array.shape[2]} channels"
    return f"{array.shape[1]}x{array.shape[0]} {kind}, {array.dtype}"


def write_png(path: Path, image, sixteen_bit: bool) -> None:
    """Float image in [0, 1] → PNG: 16-bit grayscale if asked (and gray), else 8-bit L / RGB."""
    import numpy as np
    from PIL import Image

    x = np.clip(image, 0.0, 1.0)
    if sixteen_bit and x.ndim == 2:
        Image.fromarray(np.rint(x * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.rint(x * 255).astype(np.uint8)).save(path)


def _out_paths(args, stem: str, methods: list[str]) -> dict[str, Path]:
    if args.out is None:
        return {m: Path(f"{stem}_{m}.png") for m in methods}
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png path, got {args.out!r}")
    if len(methods) == 1:
        return {methods[0]: out}
    return {m: out.with_name(f"{out.stem}_{m}{out.suffix}") for m in methods}


# ------------------------------------------------------------------------------------------------- running
def _params(args, method: str, mode: str) -> dict:
    if method == "nlmeans":
        return dict(patch_size=args.patch_size, patch_distance=args.patch_distance, h=args.h, sigma=args.sigma,
                    patch_weighting=args.patch_weighting, mode=mode)
    return dict(sigma_spatial=args.sigma_spatial, sigma_color=args.sigma_color, win_size=args.win_size, mode=mode)


def _skimage(method: str, noisy, params: dict):
    """scikit-image's filter with our parameters; returns (result, the call as text)."""
    import numpy as np
    from skimage.restoration import denoise_bilateral, denoise_nl_means

    channel_axis = -1 if noisy.ndim == 3 else None
    x = noisy.astype(np.float64)
    if method == "nlmeans":
        fast = params["patch_weighting"] != "gaussian"
        text = (f"denoise_nl_means(patch_size={params['patch_size']}, patch_distance={params['patch_distance']}, "
                f"h={params['h']:g}, sigma={params['sigma']:g}, fast_mode={fast})")
        out = denoise_nl_means(x, patch_size=params["patch_size"], patch_distance=params["patch_distance"],
                               h=params["h"], sigma=params["sigma"], fast_mode=fast, channel_axis=channel_axis)
        return out, text
    mode = "constant" if params["mode"] == "mask" else params["mode"]
    text = (f"denoise_bilateral(sigma_spatial={params['sigma_spatial']:g}, sigma_color={params['sigma_color']}, "
            f"win_size={params['win_size']}, mode={mode!r})")
    out = denoise_bilateral(x, win_size=params["win_size"], sigma_color=params["sigma_color"],
                            sigma_spatial=params["sigma_spatial"], mode=mode, channel_axis=channel_axis)
    return out, text


def _run(args) -> int:
    import numpy as np
    import torch

    from .classic import add_noise, as_float_image, bilateral, nl_means, psnr

    image, source = read_image(args.image)
    x, gray = as_float_image(image, args.image)
    x = x[..., 0] if gray else x
    clean, noisy = None, x
    header = f"{source}: {_describe(image)}"
    if args.add_noise is not None and args.reference is not None:
        raise ValueError("give either --add-noise (the input is the clean image) or --reference, not both")
    if args.add_noise is not None:
        if not 0.0 <= args.add_noise < float("inf"):
            raise ValueError(f"--add-noise must be a finite number ≥ 0, got {args.add_noise}")
        clean, noisy = x, add_noise(x, args.add_noise, seed=args.seed)
        header += f"; + Gaussian noise sigma={args.add_noise:g} (seed {args.seed}, clipped to [0, 1])"
    elif args.reference is not None:
        ref, _ = read_image(args.reference, "--reference")
        clean, ref_gray = as_float_image(ref, args.reference)
        clean = clean[..., 0] if ref_gray else clean
        if clean.shape != noisy.shape:
            raise ValueError(f"--reference {args.reference!r} has shape {clean.shape}, IMAGE has {noisy.shape}")
        header += f"; reference {args.reference}"
    if clean is not None:
        header += f"; input PSNR {psnr(clean, noisy):.2f} dB"
    methods = ["nlmeans", "bilateral"] if args.method == "both" else [args.method]
    stem = args.image.split(":", 1)[1] if args.image.startswith("skimage:") else Path(args.image).stem
    outs = _out_paths(args, stem, methods)
    if args.figure is not None and Path(args.figure).suffix.lower() != ".png":
        raise ValueError(f"--figure must be a .png path, got {args.figure!r}")
    print(f"visionattn denoise: {header}")
    label = "input" if args.add_noise is None else f"noisy (σ={args.add_noise:g})"
    panels = [(label, noisy, None if clean is None else psnr(clean, noisy), None)]
    for method in methods:
        mode = args.mode or ("reflect" if method == "nlmeans" else "mask")
        params = _params(args, method, mode)
        run = nl_means if method == "nlmeans" else bilateral
        start = time.perf_counter()
        ours = run(noisy, **params)
        seconds = time.perf_counter() - start
        shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        print(f"{method}: {shown}")
        score = None if clean is None else psnr(clean, ours)
        line = f"  ours (visionattn.ops.attention, {torch.get_num_threads()} threads): {seconds:.2f} s"
        print(line + ("" if score is None else f", PSNR {score:.2f} dB") + f" -> {outs[method]}")
        write_png(outs[method], ours, sixteen_bit=image.dtype == np.uint16)
        panels.append((f"ours {LABELS[method]}", ours, score, seconds))
        if args.compare_skimage:
            start = time.perf_counter()
            theirs, call = _skimage(method, noisy, params)
            sk_seconds = time.perf_counter() - start
            sk_score = None if clean is None else psnr(clean, theirs)
            diff = float(np.abs(theirs - ours).max())
            print(f"  skimage {call}: {sk_seconds:.2f} s" + ("" if sk_score is None else f", PSNR {sk_score:.2f} dB")
                  + f"; max |ours - skimage| = {diff:.3g}")
            panels.append((f"skimage {LABELS[method]}", theirs, sk_score, sk_seconds))
    if args.figure is not None:
        save_figure(Path(args.figure), panels, title=header)
        print(f"figure -> {args.figure}")
    return 0


def save_figure(path: Path, panels: list, title: str) -> None:
    """One column per panel ``(label, image, psnr or None, seconds or None)``: the whole image above, a centred
    crop of a quarter of each side below (so the noise is visible at figure resolution)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.9), squeeze=False)
    for col, (label, image, score, seconds) in enumerate(panels):
        h, w = image.shape[:2]
        crop = image[h * 3 // 8 : h * 5 // 8, w * 3 // 8 : w * 5 // 8]
        kwargs = dict(cmap="gray", vmin=0.0, vmax=1.0) if image.ndim == 2 else {}
        for row, shown in enumerate((image, crop)):
            ax = axes[row, col]
            ax.imshow(shown.clip(0, 1), interpolation="nearest", **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
        text = label + ("" if score is None else f"\nPSNR {score:.2f} dB")
        text += "" if seconds is None else f" ({seconds:.1f} s)"
        axes[0, col].set_title(text, fontsize=10)
    axes[1, 0].set_ylabel("centre crop")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
