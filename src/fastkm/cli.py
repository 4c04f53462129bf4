"""The ``fastkm`` command (also ``python -m fastkm``).

Subcommands:

* ``fastkm info``: version, OpenMP, threads and instruction-set level (``show_config``).
* ``fastkm compress``: reduce photos to K colours and save them as small indexed PNGs.

Errors are reported as one line on stderr with a non-zero exit status: 2 for a bad command
line, 1 when an image failed, 130 after Ctrl-C.
"""

import argparse
import errno
import importlib.resources
import os
import re
import sys
import time
from pathlib import Path

#: Exit statuses.
FAILED, USAGE, INTERRUPTED = 1, 2, 130

#: Formats that store a palette, hence at most 256 colours.
PALETTE_FORMATS = {"PNG", "GIF"}

#: Default output names, ``<stem>-k<K>.png``; a folder run skips files named like this, so
#: that running it twice does not compress its own outputs.
OUTPUT_NAME = re.compile(r"-k\d+\.png$", re.IGNORECASE)


class UsageError(Exception):
    """A bad command line: reported before any image is read."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, as every other fastkm error."""

    def error(self, message):
        self.exit(USAGE, f"fastkm: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(
        prog="fastkm", description="Exact k-means clustering and colour quantization.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="show the version, OpenMP, threads and instruction set")
    _add_compress(commands)
    return parser


def _add_compress(commands):
    compress = commands.add_parser(
        "compress", help="reduce images to K colours and save them as small PNGs",
        description="Reduce images to their K most representative colours (exact k-means) "
                    "and save them as indexed PNGs. With no INPUT, compress the sample "
                    "photo shipped with fastkm into ./sample-k<K>.png.")
    compress.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files, or folders (every image in them, except files named like "
             "outputs, *-k<N>.png)")
    compress.add_argument("-k", "--colors", type=int, default=16, metavar="K",
                          help="number of colours, 1 to 256 (default 16)")
    compress.add_argument(
        "-o", "--output", type=Path, metavar="OUT",
        help="output file for one input (its extension picks the format: .png, .gif, "
             ".webp, .tif, .bmp, .jpg), or folder for several; default <stem>-k<K>.png "
             "beside each input")
    compress.add_argument("--colorspace", choices=("rgb", "oklab"), default="rgb",
                          help="rgb maximizes PSNR (default); oklab is perceptual")
    compress.add_argument(
        "--dither", nargs="?", const=True, default=False, type=_strength, metavar="S",
        help="error-diffusion dithering, of strength S in (0, 1] if given")
    compress.add_argument("--compare", type=Path, metavar="FILE",
                          help="also write a picture of original, result and palette "
                               "side by side (one input only)")
    compress.add_argument("--force", action="store_true",
                          help="replace existing output files (never the input)")
    compress.add_argument("--quiet", action="store_true", help="print errors only")


def _strength(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"invalid strength {text!r}: give a number in (0, 1], or put --dither after "
            f"the inputs")
    return value


def main(argv=None):
    try:
        return _dispatch(argv)
    except BrokenPipeError:
        # The reader went away (``fastkm info | head``): stop quietly, as Unix tools do.
        # Python would otherwise report the error again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _dispatch(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        from ._config import show_config

        show_config()
        return 0
    if args.command == "compress":
        try:
            return _compress(args)
        except UsageError as exc:
            return _error(exc, USAGE)
        except KeyboardInterrupt:  # outputs are renamed into place whole, or not at all
            return _error("interrupted", INTERRUPTED)
    parser.print_help(sys.stderr)
    return USAGE


def _error(message, status):
    print(f"fastkm: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


# -- compress --------------------------------------------------------------------------------


def _compress(args):
    """Compress every input; returns the exit status."""
    single = len(args.inputs) <= 1 and not any(Path(p).is_dir() for p in args.inputs)
    _check_args(args, single)
    if not args.inputs:
        sample = importlib.resources.files("fastkm") / "data" / "sample.png"
        with importlib.resources.as_file(sample) as path:  # the package may be a zip
            # The package folder may be read-only: the output goes to the current one.
            return _run([(path, _output(args, Path(), "sample"))], args)
    if not single and args.output is not None:
        _make_folder(args.output)
    sources = [Path(args.inputs[0])] if single else list(_expand(args.inputs))
    if not sources:
        return _error("no images found in " + ", ".join(args.inputs), FAILED)
    return _run([(s, _output(args, s.parent, s.stem)) for s in sources], args)


def _check_args(args, single):
    """Usage errors, found before any image is read."""
    if args.colors < 1:
        raise UsageError(f"-k must be at least 1, got {args.colors}")
    format_name = "PNG"  # of the default output names
    if args.output is not None and single and not args.output.is_dir():
        format_name = _output_format(args.output)
    if format_name in PALETTE_FORMATS and args.colors > 256:
        raise UsageError(f"-k must be at most 256 for {format_name} output, got "
                         f"{args.colors}")
    if args.compare is not None:
        if not single:
            raise UsageError("--compare writes one picture: give a single input file")
        _output_format(args.compare)


def _output_format(path):
    """The format an output file name asks for; an unknown extension is a usage error."""
    from .image._io import output_format

    try:
        return output_format(path)
    except ValueError as exc:
        raise UsageError(exc) from None


def _output(args, folder, stem):
    """-o when it names a file, else ``<stem>-k<K>.png`` in -o's folder or in ``folder``."""
    if args.output is not None and not args.output.is_dir():
        return args.output
    return (args.output or folder) / f"{stem}-k{args.colors}.png"


def _make_folder(folder):
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot create the output folder ({exc.strerror})") \
            from None
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder (-o names a folder for several inputs)")


def _expand(inputs):
    """Files as given; folders as their image files, sorted by name, outputs skipped."""
    from PIL import Image

    extensions = Image.registered_extensions()
    for name in inputs:
        path = Path(name)
        if not path.is_dir():
            yield path
            continue
        yield from sorted(
            child for child in path.iterdir()
            if child.is_file() and not child.name.startswith(".")
            and child.suffix.lower() in extensions and not OUTPUT_NAME.search(child.name))


def _run(jobs, args):
    """Compress each (input, output) pair; a failure is reported and the rest go on."""
    status = 0
    written = set()
    for number, (source, output) in enumerate(jobs, 1):
        if len(jobs) > 1 and not args.quiet:
            print(f"[{number}/{len(jobs)}] {source}", file=sys.stderr, flush=True)
        try:
            line = _compress_one(source, output, args, written)
        except (OSError, ValueError) as exc:
            status = _error(_describe(exc, source), FAILED)
            continue
        except Exception as exc:  # a bug must not stop a folder run; say what it was
            status = _error(f"{source}: unexpected {type(exc).__name__}: {exc}", FAILED)
            continue
        if not args.quiet:
            print(line, flush=True)
    return status


def _compress_one(source, output, args, written):
    """Quantize one image and write it (and the compare picture); returns the report line."""
    from .image import quantize
    from .image._compare import compare_picture
    from .image._io import load_image, save_image, save_quantized

    _check_output(source, output, args.force, written)
    if args.compare is not None:
        _check_output(source, args.compare, args.force, written | {output.resolve()})
    start = time.perf_counter()
    loaded = load_image(source)
    q = quantize(loaded.pixels, args.colors, colorspace=args.colorspace, dither=args.dither)
    size = save_quantized(output, q.palette, q.indices, icc_profile=loaded.icc_profile,
                          overwrite=args.force)
    written.add(output.resolve())
    seconds = time.perf_counter() - start
    if args.compare is not None:
        picture = compare_picture(loaded.pixels, q.to_array(), q.palette)
        save_image(args.compare, picture, overwrite=args.force)
    before = source.stat().st_size
    return (f"{source} -> {output}: {before:,} -> {size:,} bytes ({before / size:.1f}:1), "
            f"PSNR {q.psnr:.2f} dB, {seconds:.2f} s")


def _check_output(source, output, force, written):
    """Refuse, before any work, to replace the input, this run's outputs, or (without
    --force) any existing file."""
    target = output.resolve()
    if source.exists() and target == source.resolve():
        raise ValueError(f"{output}: is the input; fastkm never overwrites its input")
    if target in written:
        raise ValueError(f"{output}: already written by this run (two inputs with the same "
                         f"name?)")
    if output.exists() and not force:
        raise FileExistsError(errno.EEXIST, "exists (use --force to replace it)", str(output))
    if not output.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(output.parent))


def _describe(exc, source):
    """One line naming the file: OSErrors carry their file name, ValueErrors start with it."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    message = str(exc)
    return message if message.startswith(str(source)) else f"{source}: {message}"
