"""The ``fastkm`` command (also ``python -m fastkm``).

Subcommands:

* ``fastkm info``: version, OpenMP, threads and instruction-set level (``show_config``).
* ``fastkm compress``: reduce photos to K colours and save them as small indexed PNGs.
* ``fastkm cluster``: k-means on the rows of a CSV or ``.npy`` file; labels, centres and the
  iteration picture.

Errors are reported as one line on stderr with a non-zero exit status: 2 for a bad command
line, 1 when an image or a data file failed, 130 after Ctrl-C.
"""

import argparse
import csv
import errno
import importlib.resources
import io
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

#: Exit statuses.
FAILED, USAGE, INTERRUPTED = 1, 2, 130

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
    from . import __version__

    parser = _Parser(
        prog="fastkm", description="Exact k-means clustering and colour quantization. "
                                   "'fastkm COMMAND --help' shows a command's options.")
    parser.add_argument("--version", action="version", version=f"fastkm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="show the version, OpenMP, threads and instruction set")
    _add_compress(commands)
    _add_cluster(commands)
    return parser


def _add_compress(commands):
    compress = commands.add_parser(
        "compress", help="reduce images to K colours and save them as small PNGs",
        description="Reduce images to their K most representative colours (exact k-means) "
                    "and save them as indexed PNGs. With no INPUT, compress the sample "
                    "photo shipped with fastkm into ./sample-k<K>.png.")
    compress.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files, or folders (their .png, .gif, .jpg, .jpeg, .webp, .tif, .tiff "
             "and .bmp files, except files named like outputs, *-k<N>.png)")
    compress.add_argument("-k", "--colors", type=int, default=16, metavar="K",
                          help="number of colours, 1 to 256 (default 16)")
    compress.add_argument(
        "-o", "--output", metavar="OUT",
        help="output file for one input (its extension picks the format: .png, .gif, "
             ".webp, .tif or .tiff, .bmp, .jpg or .jpeg), or a folder, created if missing, "
             "for the <stem>-k<K>.png files: always with several inputs; with one, when OUT is "
             "a folder already, has no extension or ends in a path separator. Default: "
             "<stem>-k<K>.png beside each input")
    compress.add_argument("--colorspace", choices=("rgb", "oklab"), default="rgb",
                          help="rgb maximizes PSNR (default); oklab is perceptual")
    compress.add_argument(
        "--dither", nargs="?", const=True, default=False, type=_strength, metavar="S",
        help="dither by Floyd-Steinberg error diffusion. Off by default (pngquant and "
             "Pillow dither by default; fastkm does not). --dither alone means full "
             "strength (1); --dither S, a strength S in (0, 1]. Put --dither after the "
             "inputs or give S: directly before an input it takes the file name as S "
             "('fastkm compress --dither photo.jpg' fails with \"invalid strength "
             "'photo.jpg'\")")
    compress.add_argument("--compare", type=Path, metavar="FILE",
                          help="also write a picture of original, result and palette "
                               "side by side (one input only), besides the output "
                               "itself")
    compress.add_argument("--force", action="store_true",
                          help="replace existing output files (never the input). Without "
                               "it an existing output is an error: that input is "
                               "skipped, the others go on, and the exit status is 1")
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
    if args.command in ("compress", "cluster"):
        try:
            return _compress(args) if args.command == "compress" else _cluster(args)
        except UsageError as exc:
            return _error(exc, USAGE)
        except KeyboardInterrupt:  # outputs are renamed into place whole (cluster's all
            # together, after they are all written), or not at all
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
    to_folder = _check_args(args, single)
    if to_folder:
        _make_folder(args.output)
    if not args.inputs:
        sample = importlib.resources.files("fastkm") / "data" / "sample.png"
        with importlib.resources.as_file(sample) as path:  # the package may be a zip
            # The package folder may be read-only: the output goes to the current one.
            return _run([(path, _output(args, Path(), "sample"))], args)
    sources = [Path(args.inputs[0])] if single else list(_expand(args.inputs))
    if not sources:
        return _error("no images found in " + ", ".join(args.inputs), FAILED)
    return _run([(s, _output(args, s.parent, s.stem)) for s in sources], args)


def _check_args(args, single):
    """Usage errors, found before any image is read; turns -o into a Path and returns
    whether it names a folder (to be created if missing) rather than a file."""
    if args.colors < 1:
        raise UsageError(f"-k must be at least 1, got {args.colors}")
    if args.colors > 256:  # quantize's limit, whatever the output format
        raise UsageError(f"-k must be at most 256, got {args.colors}")
    to_folder = False
    if args.output is not None:
        to_folder = _names_folder(args.output, single)
        args.output = Path(args.output)
    if args.compare is not None:
        if not single:
            raise UsageError("--compare writes one picture: give a single input file")
        _output_format(args.compare)
    return to_folder


def _names_folder(text, single):
    """Whether -o's ``text`` names a folder: an existing one, a name ending in a path
    separator, and else, for one input, a name without an extension (with one, it is a
    file, whose format the extension picks), for several any name but an image file's."""
    from .image._io import FORMATS

    path = Path(text)  # (which drops a trailing separator)
    if path.is_dir() or text.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        return True
    if single:
        if path.suffix:
            _output_format(path)
            return False
        return True
    if path.suffix.lower() in FORMATS:  # a typo, not a folder to create
        raise UsageError(f"{path}: -o names an image file, but there are several inputs: "
                         f"give a folder")
    return True


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
        raise UsageError(f"{folder}: not a folder (-o names a folder here)")


def _expand(inputs):
    """Files as given; folders as their image files, sorted by name, outputs skipped."""
    # The output formats only: Pillow also registers formats it can only write (PDF) or
    # reads through external tools and stubs (EPS, MPEG, HDF5), which would fail here.
    from .image._io import FORMATS

    for name in inputs:
        path = Path(name)
        if not path.is_dir():
            yield path
            continue
        yield from sorted(
            child for child in path.iterdir()
            if child.is_file() and not child.name.startswith(".")
            and child.suffix.lower() in FORMATS and not OUTPUT_NAME.search(child.name))


def _run(jobs, args):
    """Compress each (input, output) pair; a failure is reported and the rest go on."""
    status = 0
    written = set()
    # Every input of the run, not only a job's own: with --force, one job's output could
    # otherwise replace a later job's input (``a.png a-k16.png``).
    inputs = {source.resolve() for source, _ in jobs if source.exists()}
    for number, (source, output) in enumerate(jobs, 1):
        if len(jobs) > 1 and not args.quiet:
            print(f"[{number}/{len(jobs)}] {source}", file=sys.stderr, flush=True)
        try:
            line = _compress_one(source, output, args, written, inputs)
        except (OSError, ValueError) as exc:
            status = _error(_describe(exc, source, output, args.compare), FAILED)
            continue
        except Exception as exc:  # a bug must not stop a folder run; say what it was
            status = _error(f"{source}: unexpected {type(exc).__name__}: {exc}", FAILED)
            continue
        if not args.quiet:
            _print_out(line)
    return status


def _print_out(text):
    """print to stdout, with what it cannot encode escaped: a file name's bytes that are not
    in the file system's encoding (held as surrogates) raised UnicodeEncodeError in a UTF-8
    locale, after the output was written, and ended a folder run."""
    # The name's own bytes (surrogates back to bytes) shown as \xNN where undecodable,
    # then what the terminal's encoding lacks escaped too.
    shown = os.fsencode(text).decode(sys.getfilesystemencoding(), "backslashreplace")
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(shown.encode(encoding, "backslashreplace").decode(encoding), flush=True)


def _compress_one(source, output, args, written, inputs):
    """Quantize one image and write it (and the compare picture); returns the report line."""
    from .image import quantize
    from .image._compare import compare_picture
    from .image._io import _encode_image, _encode_quantized, _write_atomic, load_image

    _check_output(source, output, args.force, written, inputs)
    if args.compare is not None:
        if args.compare.resolve() == output.resolve():
            raise ValueError(f"{args.compare}: --compare names the output file too")
        _check_output(source, args.compare, args.force, written, inputs)
    start = time.perf_counter()
    loaded = load_image(source)
    q = quantize(loaded.pixels, args.colors, colorspace=args.colorspace, dither=args.dither)
    files = [(output, _encode_quantized(output, q.palette, q.indices, loaded.icc_profile,
                                        metadata=loaded.metadata))]
    seconds = time.perf_counter() - start
    if args.compare is not None:
        picture = compare_picture(loaded.pixels, q.to_array(), q.palette)
        files.append((args.compare, _encode_image(args.compare, picture)))
    # Both are encoded before either is written, so that an encoding error (a size limit,
    # say) leaves neither; a failed write of the second leaves the first.
    for path, data in files:
        _write_atomic(path, data)
    written.add(output.resolve())
    size = len(files[0][1])
    before = source.stat().st_size
    # (Three significant digits: an output a little larger than its input is 0.996:1, not
    # 1.0:1.)
    return (f"{source} -> {output}: {before:,} -> {size:,} bytes ({before / size:.3g}:1), "
            f"PSNR {q.psnr:.2f} dB, {seconds:.2f} s")


def _check_output(source, output, force, written, inputs=frozenset()):
    """Refuse, before any work, to replace the input, the run's other ``inputs`` (resolved
    paths), this run's outputs, or (without --force) any existing file."""
    target = output.resolve()
    if output.is_dir():  # even with --force: the rename would fail, or replace a folder
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(output))
    if source.exists() and target == source.resolve():
        raise ValueError(f"{output}: is the input; fastkm never overwrites its input")
    if target in inputs:
        raise ValueError(f"{output}: is another input of this run; fastkm never overwrites "
                         f"its inputs")
    if target in written:
        raise ValueError(f"{output}: already written by this run (two inputs with the same "
                         f"name?)")
    if output.exists() and not force:
        raise FileExistsError(errno.EEXIST, "exists (use --force to replace it)", str(output))
    if not output.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(output.parent))


def _describe(exc, source, *outputs):
    """One line naming the file: OSErrors carry their file name, ValueErrors start with
    the input's or an output's (else the input's is put first)."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    message = str(exc)
    named = tuple(f"{path}:" for path in (source, *outputs) if path is not None)
    return message if message.startswith(named) else f"{source}: {message}"


# -- cluster ---------------------------------------------------------------------------------

#: --init values that name a method rather than a file.
INIT_METHODS = ("k-means++", "random")

#: Output formats of -o and --plot, by extension.
TABLE_OUTPUTS = (".csv", ".npz")
PLOT_OUTPUTS = (".png", ".pdf", ".svg")


def _add_cluster(commands):
    cluster = commands.add_parser(
        "cluster", help="k-means on the rows of a CSV or .npy file",
        description="Cluster the rows of DATA with exact k-means and print the inertia, the "
                    "number of iterations and the cluster sizes. DATA is a CSV file (comma, "
                    "semicolon or tab separated; a header row is detected and optional) or "
                    "a 2-D .npy array; the columns used must be numeric, without missing "
                    "values.")
    cluster.add_argument("data", type=Path, metavar="DATA", help="a .csv or .npy file")
    cluster.add_argument("-k", "--clusters", type=int, metavar="K",
                         help="number of clusters (default: the rows of an --init FILE, "
                              "else 3)")
    cluster.add_argument("--init", default="k-means++", metavar="{k-means++,random,FILE}",
                         help="k-means++ (default), random rows (best of 10 runs), or a "
                              ".csv/.npy FILE of initial centres, one row per cluster, in "
                              "DATA's units and selected columns")
    cluster.add_argument("--max-iter", type=int, default=300, metavar="N",
                         help="most Lloyd iterations (default 300)")
    cluster.add_argument("--seed", type=int, default=0, metavar="S",
                         help="seed of the initialization (default 0, so that runs repeat)")
    cluster.add_argument("--standardize", action="store_true",
                         help="scale every column to mean 0 and variance 1 before "
                              "clustering: the printed inertia (and the --plot axes) "
                              "are then in these standardized units, while the centres "
                              "are still written in DATA's units")
    cluster.add_argument("--columns", metavar="A,B,...",
                         help="use only these columns: header names or 0-based indices")
    cluster.add_argument(
        "-o", "--output", type=Path, metavar="OUT",
        help="write the result: OUT.csv gets one label (0 to K-1) per data row under a "
             "'label' header, and OUT's sibling <stem>-centers.csv the centres, row i "
             "being cluster i's, under the column names (usable as --init); OUT.npz gets "
             "the arrays 'labels' and 'centers'")
    cluster.add_argument(
        "--plot", type=Path, metavar="FILE",
        help="draw the iteration picture (.png, .pdf or .svg): points coloured by cluster, "
             "centres as crosses along their paths; data with more than 2 columns are "
             "shown on their first two principal components (needs matplotlib: "
             "pip install 'fastkm[plot]')")
    cluster.add_argument("--panels", action="store_true",
                         help="with --plot, small panels of the iterations instead of one "
                              "picture: one per iteration, at most 12 (evenly spaced, the "
                              "first and last included)")
    cluster.add_argument("--force", action="store_true",
                         help="replace existing output files (never the input)")


def _cluster(args):
    """Read, cluster, write, report; returns the exit status."""
    _check_cluster_args(args)
    try:
        targets = _cluster_targets(args)
        X, names, _ = _read_data(args.data, args.columns)
        if args.plot is not None and X.shape[1] < 2:
            raise ValueError(f"{args.data}: --plot needs at least 2 columns, the data has 1")
        init = (args.init if args.init in INIT_METHODS
                else _read_init(Path(args.init), args.clusters, names))
        k = args.clusters or (3 if isinstance(init, str) else len(init))
        if len(X) < k:
            raise ValueError(f"{args.data}: {_count(len(X), 'row')}, fewer than the {k} "
                             f"clusters")
        # Everything is computed and rendered before the first file is written, and the
        # files are written together (_write_all): an error leaves no output at all.
        files, report = _fit_and_render(X, names, init, k, args, targets)
        _write_all(files)
    except (OSError, ValueError) as exc:
        # OSErrors carry their file name; the ValueErrors raised here start with it.
        message = (f"{exc.filename}: {exc.strerror or exc}"
                   if isinstance(exc, OSError) and exc.filename else exc)
        return _error(message, FAILED)
    except MemoryError:  # (the data are held whole in memory, as float64)
        return _error(f"{args.data}: not enough memory to read and cluster this data",
                      FAILED)
    _print_out("\n".join(report))
    return 0


def _check_cluster_args(args):
    """Usage errors, found before any file is read."""
    if args.clusters is not None and args.clusters < 1:
        raise UsageError(f"-k must be at least 1, got {args.clusters}")
    if args.max_iter < 1:
        raise UsageError(f"--max-iter must be at least 1, got {args.max_iter}")
    if not 0 <= args.seed < 2**32:  # NumPy's range of seeds
        raise UsageError(f"--seed must be from 0 to {2**32 - 1}, got {args.seed}")
    if args.output is not None and args.output.suffix.lower() not in TABLE_OUTPUTS:
        raise UsageError(f"{args.output}: -o must end in .csv or .npz")
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_OUTPUTS:
        raise UsageError(f"{args.plot}: --plot must end in .png, .pdf or .svg")
    if args.panels and args.plot is None:
        raise UsageError("--panels changes the --plot picture: give --plot FILE too")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: install fastkm[plot] "
                             "(pip install 'fastkm[plot]')") from None


def _cluster_targets(args):
    """The output files by role, refused before any work as compress refuses its own: an
    input, twice the same file, or (without --force) an existing file."""
    targets = {}
    if args.output is not None:
        targets["output"] = args.output
        if args.output.suffix.lower() == ".csv":
            targets["centers"] = args.output.with_name(f"{args.output.stem}-centers.csv")
    if args.plot is not None:
        targets["plot"] = args.plot
    inputs = [args.data] + ([Path(args.init)] if args.init not in INIT_METHODS else [])
    written = set()
    for path in targets.values():
        for source in inputs:
            _check_output(source, path, args.force, written)
        written.add(path.resolve())
    return targets


# Overflow (values beyond about 1e154, whose squares are infinite) is reported once, by the
# check after the fit or by KMeans's own of the initial centres, not as NumPy warnings.
@np.errstate(over="ignore", invalid="ignore")
def _fit_and_render(X, names, init, k, args, targets):
    """Cluster X; returns the (path, bytes) pairs to write and the report's lines."""
    from ._kmeans import KMeans
    from .plot import iterations, record

    if args.standardize:
        # Each column is divided by its largest |x| first: the squares in std overflow
        # beyond 1e154, and X - mean near 1e308.
        peak = np.abs(X).max(axis=0)
        peak[peak == 0] = 1
        mean, scale = (X / peak).mean(axis=0), (X / peak).std(axis=0)
        scale[scale == 0] = 1  # a constant column stays constant (0), rather than NaN
        X = (X / peak - mean) / scale
        if not isinstance(init, str):
            init = (init / peak - mean) / scale
    recorder = record() if args.plot is not None else None
    starts = []  # each run's initial centres, for the picture's paths
    fit_init, n_init = init, "auto"
    if recorder is not None and isinstance(init, str):
        n_init = 1 if init == "k-means++" else 10  # (what n_init="auto" gives)
        fit_init = _keeping_starts(init, starts, n_init, args.max_iter)
    try:
        km = KMeans(k, init=fit_init, n_init=n_init, max_iter=args.max_iter,
                    random_state=args.seed, callback=recorder).fit(X)
    except ValueError as exc:  # e.g. fewer distinct rows than clusters
        raise ValueError(f"{args.data}: {exc}") from None
    centers = ((km.cluster_centers_ * scale + mean) * peak if args.standardize
               else km.cluster_centers_)
    if not (np.isfinite(km.inertia_) and np.isfinite(centers).all()):
        raise ValueError(f"{args.data}: values too large: squared distances overflow; "
                         f"rescale the data")
    files = []
    if args.output is not None and "centers" in targets:
        files.append((targets["output"], _csv_bytes(["label"], km.labels_[:, None])))
        files.append((targets["centers"], _csv_bytes(names, centers)))
    elif args.output is not None:
        buffer = io.BytesIO()
        np.savez(buffer, labels=km.labels_, centers=centers)
        files.append((targets["output"], buffer.getvalue()))
    if args.plot is not None:
        # With several runs (--init random), draw the one that gave the result.
        run = next(i for i, history in enumerate(recorder.runs)
                   if np.array_equal(history[-1].centers, km.cluster_centers_))
        units = " (standardized)" if args.standardize else ""
        # The single picture colours the points by the labels written, those of the final
        # centres (the last iteration's are those of the centres before its update).
        figure = iterations(X, recorder.runs[run], init=starts[run] if starts else init,
                            panels=args.panels, labels=None if args.panels else km.labels_,
                            feature_names=[name + units for name in names[:2]])
        buffer = io.BytesIO()
        figure.savefig(buffer, format=args.plot.suffix.lower()[1:])
        files.append((targets["plot"], buffer.getvalue()))
    sizes = np.bincount(km.labels_, minlength=k)
    # A run that stops before --max-iter has converged; one that reaches it may also have
    # converged on its last iteration, which KMeans does not say.
    stopped = ("converged" if km.n_iter_ < args.max_iter
               else "reached --max-iter: may not have converged")
    how = f"init {args.init}, seed {args.seed}" if isinstance(init, str) \
        else f"init from {args.init}"
    report = [
        f"{args.data}: {_count(len(X), 'row')}, {_count(X.shape[1], 'column')}, "
        f"{_count(k, 'cluster')} ({how}{', standardized' if args.standardize else ''})",
        f"inertia {km.inertia_:.6g} after {_count(km.n_iter_, 'iteration')} ({stopped})",
        "cluster sizes: " + ", ".join(f"{i}: {n}" for i, n in enumerate(sizes)),
    ]
    report += [f"wrote {path}" for path, _ in files]
    return files, report


def _keeping_starts(method, starts, n_init, max_iter):
    """An init callable that does what ``init=method`` does and appends each start to
    ``starts``: KMeans shows its initial centres to nobody but a callable init.

    KMeans calls a callable init with all of X, but draws a string init from the rows it
    fits (X's distinct rows, weighted by their counts, where that pays off): the same
    rows, weights, threads and random state here give the result ``init=method`` gives,
    which the tests check. ``n_init`` and ``max_iter`` are the fit's.
    """
    from ._init import initial_centers
    from ._kmeans import _fit_rows
    from ._validation import effective_n_threads

    n_threads = effective_n_threads(None)
    found = {}  # X's rows to draw from, found once for the n_init calls

    def init(X, n_clusters, random_state):
        if found.get("X") is not X:
            found.update(X=X, rows=_fit_rows(X, None, n_threads, n_clusters,
                                             n_init * max_iter)[1:])
        rows, weights = found["rows"]
        centers = initial_centers(rows, n_clusters, method, weights, random_state, n_threads)
        starts.append(centers)
        return centers

    return init


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _csv_bytes(header, rows):
    """CSV text: the header line (quoted where a name holds a comma or a quote), then the
    rows (integers as such, floats to full precision, as repr writes them)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows.tolist())
    return text.getvalue().encode()


def _write_all(files):
    """Write the (path, bytes) pairs together: every file or, on a failure before the
    renames (an unwritable folder, a full disk, Ctrl-C), none.

    Each file is first written whole to a temporary name beside its target, where the
    writes can fail; only then are they all renamed into place, with Ctrl-C held back
    until the last rename (in the main thread, where Python runs signal handlers; masking
    the signal would not do: OpenMP's threads would take it). A failed rename (the target
    made a folder meanwhile, say) can still leave the earlier ones in place.
    """
    import signal

    from .image._io import _write_temporary

    written = []  # (temporary, target)
    try:
        for path, data in files:
            written.append((_write_temporary(path, data), path))
        interrupted = []
        try:
            previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        except ValueError:  # not the main thread: no Ctrl-C arrives here to hold back
            previous = None
        try:
            for temporary, path in written:
                os.replace(temporary, path)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    if interrupted:  # held back during the renames: the files are all in place
        raise KeyboardInterrupt


def _read_init(path, n_clusters, names):
    """Initial centres from a .csv or .npy file: (K, len(names)), K = -k when given.

    ``names`` are the data's selected columns: a CSV whose first row holds exactly these
    names has a header, even names that look like numbers (years), as the centres file of
    -o has. A header of the same names in another order is refused.
    """
    init, init_names, header = _read_data(path, None, known_names=names)
    if header and init_names != names and sorted(init_names) == sorted(names):
        raise ValueError(f"{path}: init columns {','.join(init_names)} do not match the "
                         f"data's {','.join(names)} (the same names in another order)")
    expected = (n_clusters or len(init), len(names))
    if init.shape != expected:
        raise ValueError(f"{path}: initial centres of shape {init.shape}; expected "
                         f"{expected} (one row per cluster, one column per data column)")
    return init


def _read_data(path, columns, known_names=None):
    """The numeric matrix of a .npy or CSV file, its column names, and whether they came
    from a header (``known_names``: see :func:`_read_csv`)."""
    if path.suffix.lower() != ".npy":
        return _read_csv(path, columns, known_names)
    X = _read_npy(path)
    names = [f"x{i}" for i in range(X.shape[1])]
    if columns is not None:
        chosen = _column_indices(columns, None, X.shape[1], path)
        X, names = X[:, chosen], [names[i] for i in chosen]
    # Checked after the cast: a long double beyond float64's range becomes inf there.
    with np.errstate(over="ignore"):
        X64 = np.ascontiguousarray(X, dtype=np.float64)
    bad = ~np.isfinite(X64)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        value = X[row, column]
        what = (f"{value} is too large for float64" if np.isfinite(value)
                else f"{value} is not a finite number (missing values are not allowed)")
        raise ValueError(f"{path}: row {row + 1}, column {names[column]!r}: {what}")
    return X64, names, False


def _read_npy(path):
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # EOFError: an empty or truncated file
        raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None
    except MemoryError:
        raise ValueError(f"{path}: the array is too large for memory") from None
    if not isinstance(X, np.ndarray):  # np.load opens an .npz archive whatever its name
        X.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.size == 0 or X.dtype.kind not in "fiub":
        raise ValueError(f"{path}: expected a non-empty 2-D numeric array, got shape "
                         f"{X.shape}, dtype {X.dtype}")
    return X


#: Delimiters of a CSV file, the first preferred where several fit.
DELIMITERS = ",;\t"
#: Lines looked at to choose the delimiter, and rows below the first to detect a header.
SNIFF_LINES, HEADER_ROWS = 5, 20
#: Cells that mark a missing value (compared lower-case): never a column name, so that a
#: first data row holding one is not taken for a header.
MISSING = frozenset({"", "na", "n/a", "#n/a", "nan", "null", "none", "-", "--", "?", "."})


def _read_csv(path, columns, known_names=None):
    """Parse a CSV file: (values of the selected columns, their names, whether they came
    from a header). A first row equal to ``known_names`` is a header; else
    :func:`_is_header` decides."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drop a spreadsheet's BOM
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (UTF-8) CSV file") from None
    try:
        rows = [(number, row) for number, row in enumerate(
            csv.reader(io.StringIO(text), delimiter=_delimiter(text)), 1)
            if any(c.strip() for c in row)]
    except csv.Error as exc:  # a field over the csv module's size limit, say
        raise ValueError(f"{path}: not a CSV file fastkm can read ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    first = [c.strip() for c in rows[0][1]]
    header = (known_names is not None and first == list(known_names)) or _is_header(rows)
    width = len(rows[0][1])
    names = first if header else [f"x{i}" for i in range(width)]
    if header:
        rows = rows[1:]
        if not rows:
            raise ValueError(f"{path}: a header and no data rows")
    for number, row in rows:
        if len(row) != width:
            raise ValueError(f"{path}: line {number} has {len(row)} fields, expected {width}")
    chosen = (range(width) if columns is None
              else _column_indices(columns, names if header else None, width, path))
    X = np.empty((len(rows), len(chosen)))
    for j, column in enumerate(chosen):
        for i, (number, row) in enumerate(rows):
            cell = row[column].strip()
            try:
                X[i, j] = _number(cell) if cell else np.nan
            except ValueError:
                raise ValueError(
                    f"{path}: column {names[column]!r} is not numeric (line {number}: "
                    f"{cell!r}); choose numeric columns with --columns") from None
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        number, cell = rows[i][0], rows[i][1][chosen[j]].strip()
        where = f"{path}: line {number}, column {names[chosen[j]]!r}"
        if cell and not any(word in cell.lower() for word in ("inf", "nan")):
            raise ValueError(f"{where}: {cell!r} is too large for float64")
        what = f"{cell!r} is not a finite number" if cell else "an empty cell"
        raise ValueError(f"{where}: {what} (missing values are not allowed)")
    return X, [names[i] for i in chosen], header


def _delimiter(text):
    """The first delimiter that splits the first non-blank lines alike, quotes respected,
    into more than one field ('"Weight, kg";"Height, cm"' is two fields); else the first
    one in the first line, else a comma (one column)."""
    head = text[:1 << 16]
    lines = head.splitlines()
    if len(head) < len(text):
        lines = lines[:-1]  # (perhaps cut short)
    lines = [line for line in lines if line.strip()][:SNIFF_LINES]
    for delimiter in DELIMITERS:
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and widths.pop() > 1:
            return delimiter
    first = lines[0] if lines else ""
    return next((d for d in DELIMITERS if d in first), ",")


def _is_header(rows):
    """Whether the first row names the columns: some cell of it is a name (neither a
    number nor a missing-value marker) above a number in one of the next HEADER_ROWS rows
    (or, with one row, it has a name and no number). A first row whose only non-numbers
    are missing values is data, reported as such."""
    first = rows[0][1]
    if len(rows) == 1:
        return any(map(_is_name, first)) and not any(map(_is_number, first))
    below = [row for _, row in rows[1:1 + HEADER_ROWS]]
    return any(_is_name(cell) and any(j < len(row) and _is_number(row[j]) for row in below)
               for j, cell in enumerate(first))


def _is_name(cell):
    return not _is_number(cell) and cell.strip().lower() not in MISSING


def _is_number(cell):
    try:
        _number(cell.strip())
    except ValueError:
        return False
    return True


def _number(cell):
    """A CSV cell's number: float() also reads '1_000' and non-ASCII digits ('１０'), which
    no CSV reader takes for numbers."""
    if "_" in cell or not cell.isascii():
        raise ValueError(f"not a number: {cell!r}")
    return float(cell)


def _column_indices(columns, names, width, path):
    """--columns as 0-based indices: each item a header name, or else an index."""
    chosen = []
    for item in (c.strip() for c in columns.split(",")):
        if names is not None and names.count(item) > 1:
            same = [str(i) for i, name in enumerate(names) if name == item]
            raise ValueError(f"{path}: column name {item!r} is ambiguous (columns "
                             f"{' and '.join(same)}); give its index in --columns")
        if names is not None and item in names:
            index = names.index(item)
        elif item.isascii() and item.isdigit() and int(item) < width:  # not '²'
            index = int(item)
        else:
            known = (f"the columns are {', '.join(names)}" if names is not None
                     else f"give 0-based indices below {width}")
            raise ValueError(f"{path}: unknown column {item!r} in --columns ({known})")
        if index in chosen:
            raise ValueError(f"{path}: column {item!r} is given twice in --columns")
        chosen.append(index)
    return chosen
