"""The exercise's second half: a photo reduced to 16 colours with k-means.

Quantizes the 128 x 128 bird photo to 16 colours (k-means on its pixels' RGB values),
writes the result as an indexed PNG and a side-by-side picture of the original, the result
and the palette, and prints the PSNR.

Usage::

    python examples/compress_bird.py OUT_FOLDER [IMAGE] [-k COLOURS]

IMAGE defaults to the repository's tests/data/bird_small.png.
"""

import argparse
from pathlib import Path

import numpy as np

from fastkm.image import load_image, quantize

# A private module: fastkm.image exports no function for the side-by-side picture. This is
# the one behind `fastkm compress --compare`; called here, it draws the picture from the
# result above instead of quantizing the photo a second time.
from fastkm.image._compare import compare_picture

BIRD = Path(__file__).resolve().parent.parent / "tests" / "data" / "bird_small.png"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compress a photo to K colours.")
    parser.add_argument("out", type=Path, help="folder for the pictures (created if needed)")
    parser.add_argument("image", type=Path, nargs="?", default=BIRD,
                        help="the photo (default: the repository's tests/data/bird_small.png)")
    parser.add_argument("-k", "--colors", type=int, default=16, help="colours (default 16)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    original = load_image(args.image).pixels
    q = quantize(original, args.colors)
    height, width = q.indices.shape
    print(f"{args.image}: {width} x {height} pixels, "
          f"{len(np.unique(original.reshape(-1, original.shape[2]), axis=0))} distinct "
          f"colours -> {len(q.palette)} colours, PSNR {q.psnr:.2f} dB")

    result = args.out / f"{args.image.stem}-k{args.colors}.png"
    q.save(result, overwrite=True)
    print(f"wrote {result} ({result.stat().st_size:,} bytes; the original has "
          f"{args.image.stat().st_size:,})")
    compare = args.out / f"{args.image.stem}-compare.png"
    compare_picture(original, q.to_array(), q.palette).save(compare)
    print(f"wrote {compare} (original, {args.colors} colours and the palette side by side)")


if __name__ == "__main__":
    main()
