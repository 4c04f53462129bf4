"""Colour quantization: fastkm.image against Pillow and libimagequant on Kodak-24.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_images.py [KODAK_DIR]

Part 1, Kodak-24 (every ``*.png`` of KODAK_DIR, default ../shared/data/kodak beside the repo)
at K = 16, 64 and 256, undithered and dithered, all methods in one run, interleaved image by
image. Per method, the means over the images of:

- PSNR (dB) of the quantized RGB image against the original;
- blurred PSNR: the PSNR after a 3x3 box blur of both images, i.e. how well local averages
  survive (dithering should raise it);
- CIEDE2000: mean skimage.color.deltaE_ciede2000 of the two images in Lab
  (skimage.color.rgb2lab), computed once per distinct (original colour, output colour) pair
  and weighted by its pixel count (the same mean as over all pixels, faster);
- PNG bytes: fastkm's ``QuantizedImage.save`` (smallest bit depth, Pillow's optimize); the
  others' mode 'P' image saved by Pillow with ``optimize=True``;
- time (ms) of the quantization and remap from a decoded RGB ``PIL.Image`` to the indexed
  result (no file I/O), the minimum over ``--kodak-repeat`` calls.

Methods: fastkm (``fastkm.image.quantize``, ``dither=True`` when dithered); Pillow
``quantize`` with MEDIANCUT, MEDIANCUT with ``kmeans=1`` and FASTOCTREE (dithered: the
palette of the undithered call, then Pillow's Floyd-Steinberg through ``quantize(palette=...,
dither=FLOYDSTEINBERG)``, since Pillow ignores ``dither`` otherwise; the time covers both
calls); libimagequant (``imagequant.quantize_pil_image``, ``dithering_level`` 0 or 1,
``min_quality=0, max_quality=100``).

Part 2, 12 megapixels: kodim23 resized to 4000x3000 with Pillow LANCZOS; undithered
quantize+remap time at K = 16 and 256 for fastkm (default threads and ``n_threads=1``) and
libimagequant, interleaved in this process, the minimum over ``--repeat`` rounds, with the
ratios libimagequant/fastkm (above 1: fastkm is faster).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, table  # noqa: E402

import fastkm  # noqa: E402
from fastkm.image import quantize as fastkm_quantize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_KODAK = REPO.parent / "shared" / "data" / "kodak"
PILLOW_METHODS = {
    "Pillow MEDIANCUT": dict(method=Image.Quantize.MEDIANCUT),
    "Pillow MEDIANCUT+kmeans=1": dict(method=Image.Quantize.MEDIANCUT, kmeans=1),
    "Pillow FASTOCTREE": dict(method=Image.Quantize.FASTOCTREE),
}


# --- methods: each returns (output, rgb array, saver) -------------------------------------

def run_fastkm(img, k, dither, n_threads=None):
    q = fastkm_quantize(img, n_colors=k, dither=bool(dither), n_threads=n_threads)
    return q


def fastkm_result(q):
    return q.to_array()[..., :3], lambda path: q.save(path, overwrite=True)


def run_pillow(img, k, dither, options):
    pal = img.quantize(k, **options)
    if not dither:
        return pal
    return img.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG)


def run_liq(img, k, dither):
    import imagequant

    return imagequant.quantize_pil_image(img, dithering_level=1.0 if dither else 0.0,
                                         max_colors=k, min_quality=0, max_quality=100)


def pil_result(p):
    def save(path):
        p.save(path, optimize=True)
        return os.path.getsize(path)

    return np.asarray(p.convert("RGB")), save


def methods(have_liq):
    """name -> (call(img, k, dither), result(output) -> (rgb, saver))."""
    out = {"fastkm": (run_fastkm, fastkm_result)}
    if have_liq:
        out["libimagequant"] = (run_liq, pil_result)
    for name, options in PILLOW_METHODS.items():
        out[name] = ((lambda img, k, dither, o=options: run_pillow(img, k, dither, o)),
                     pil_result)
    return out


# --- metrics ---------------------------------------------------------------------------------

def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def box_blur(a):
    """3x3 mean of each channel (edges: nearest pixel repeated), float64."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(a.astype(np.float64), size=(3, 3, 1), mode="nearest")


def blurred_psnr(blurred_original, b):
    mse = np.mean((blurred_original - box_blur(b)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _keys(a):
    a = a.reshape(-1, 3).astype(np.int64)
    return (a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2]


def _rgb_of(keys):
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255],
                    axis=-1).astype(np.uint8)[None]


def ciede2000(a, b):
    """Mean CIEDE2000 over pixels, evaluated once per distinct colour pair."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    pairs, counts = np.unique((_keys(a) << 24) | _keys(b), return_counts=True)
    de = deltaE_ciede2000(rgb2lab(_rgb_of(pairs >> 24)), rgb2lab(_rgb_of(pairs & 0xFFFFFF)))[0]
    return float(np.dot(de, counts) / counts.sum())


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


# --- part 1: Kodak ---------------------------------------------------------------------------

def kodak_table(paths, ks, repeat, have_liq, tmp):
    table_methods = methods(have_liq)
    sums = {}  # (dither, k, method) -> [psnr, blurred psnr, de2000, bytes, seconds]
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        img.load()
        orig = np.asarray(img)
        blurred = box_blur(orig)
        for k in ks:
            for dither in (False, True):
                for name, (call, result) in table_methods.items():
                    seconds, out = timed(lambda: call(img, k, dither), repeat)
                    rgb, save = result(out)
                    n_colours = len(np.unique(_keys(rgb)))
                    if n_colours > k:
                        raise RuntimeError(f"{name} gave {n_colours} colours for K={k}")
                    nbytes = save(os.path.join(tmp, "out.png"))
                    values = [psnr(orig, rgb), blurred_psnr(blurred, rgb), ciede2000(orig, rgb),
                              nbytes, seconds]
                    acc = sums.setdefault((dither, k, name), [0.0] * 5)
                    for j, v in enumerate(values):
                        acc[j] += v
        print(f"  done: {Path(path).name} ({i + 1}/{len(paths)})", file=sys.stderr, flush=True)

    n = len(paths)
    tables = []
    for dither in (False, True):
        rows = []
        for k in ks:
            liq_psnr = sums[(dither, k, "libimagequant")][0] / n if have_liq else None
            for name in table_methods:
                p, bp, de, nbytes, seconds = (v / n for v in sums[(dither, k, name)])
                row = [k, name, f"{p:.2f}", f"{bp:.2f}", f"{de:.3f}", f"{nbytes / 1000:.1f}",
                       f"{1000 * seconds:.0f}"]
                if have_liq:
                    row.append(f"{p - liq_psnr:+.2f}")
                rows.append(row)
        headers = ["K", "method", "PSNR dB", "blurred PSNR dB", "CIEDE2000", "PNG kB",
                   "time ms"]
        if have_liq:
            headers.append("PSNR vs libimagequant")
        title = "dithered" if dither else "undithered"
        tables.append(f"Kodak-{n}, {title} (means over {n} images)\n\n" + table(headers, rows))
    return tables


# --- part 2: 12 megapixels ---------------------------------------------------------------------

def twelve_mp_table(kodak_dir, ks, repeat, have_liq):
    img = Image.open(Path(kodak_dir) / "kodim23.png").convert("RGB")
    img = img.resize((4000, 3000), Image.Resampling.LANCZOS)
    img.load()
    orig = np.asarray(img)
    runners = {
        "fastkm (default threads)": lambda k: run_fastkm(img, k, False),
        "fastkm (n_threads=1)": lambda k: run_fastkm(img, k, False, n_threads=1),
    }
    if have_liq:
        runners["libimagequant"] = lambda k: run_liq(img, k, False)
    rows = []
    for k in ks:
        best = {name: float("inf") for name in runners}
        cpu = {}
        outs = {}
        for _ in range(repeat):
            for name, run in runners.items():
                c = time.process_time()
                t = time.perf_counter()
                outs[name] = run(k)
                wall = time.perf_counter() - t
                if wall < best[name]:
                    best[name] = wall
                    cpu[name] = time.process_time() - c
        for name in runners:
            out = outs[name]
            rgb = out.to_array()[..., :3] if name.startswith("fastkm") else np.asarray(
                out.convert("RGB"))
            row = [k, name, f"{best[name]:.3f}", f"{cpu[name] / best[name]:.2f}",
                   f"{psnr(orig, rgb):.2f}"]
            if have_liq:
                row.append(f"{best['libimagequant'] / best[name]:.2f}x")
            rows.append(row)
    headers = ["K", "method", "time s (min)", "CPU/wall", "PSNR dB"]
    if have_liq:
        headers.append("libimagequant/this")
    return (f"12 MP (kodim23 resized to 4000x3000, LANCZOS), undithered quantize+remap, "
            f"min of {repeat} rounds\n\n" + table(headers, rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kodak_dir", nargs="?", default=str(DEFAULT_KODAK),
                        help=f"folder of Kodak PNGs (default {DEFAULT_KODAK})")
    parser.add_argument("--quick", action="store_true", help="3 images, K=16 only")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the 12 MP timing; the minimum is kept (default 3)")
    parser.add_argument("--kodak-repeat", type=int, default=1,
                        help="calls per image and method in the Kodak table (default 1)")
    parser.add_argument("--skip-kodak", action="store_true", help="only the 12 MP test")
    parser.add_argument("--skip-12mp", action="store_true", help="only the Kodak table")
    args = parser.parse_args(argv)

    paths = sorted(Path(args.kodak_dir).glob("*.png"))
    if not paths:
        parser.error(f"no .png files in {args.kodak_dir}")
    ks = (16,) if args.quick else (16, 64, 256)
    if args.quick:
        paths = paths[:3]

    import PIL
    import skimage

    versions = [f"Pillow {PIL.__version__}, scikit-image {skimage.__version__}"]
    try:
        import imagequant  # noqa: F401
        from importlib.metadata import version

        have_liq = True
        versions.append(f"imagequant (libimagequant) {version('imagequant')}")
    except ImportError:
        have_liq = False
        versions.append("imagequant: not installed (libimagequant left out)")
    for line in describe(versions):
        print(line)
    print(f"fastkm threads (default): {fastkm.build_info()['threads']}")
    print()

    if not args.skip_kodak:
        with tempfile.TemporaryDirectory() as tmp:
            for t in kodak_table(paths, ks, args.kodak_repeat, have_liq, tmp):
                print(t)
                print(flush=True)
    if not args.skip_12mp:
        print(twelve_mp_table(args.kodak_dir, (16,) if args.quick else (16, 256), args.repeat,
                              have_liq))
    return 0


if __name__ == "__main__":
    sys.exit(main())
