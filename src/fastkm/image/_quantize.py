"""Colour quantization by exact weighted k-means on an image's colour histogram.

The path for one image:

1. the exact histogram of its colours in one parallel pass (a 2**24-bin count for RGB; a
   sort of 32-bit keys for images with partial transparency);
2. k-means of the distinct colours weighted by their pixel counts, which is exactly
   k-means of all the pixels: a weighted k-means++ start and Lloyd iterations on 6-bit
   bins (each bin its colours' weighted mean) to get close cheaply, with very many colours
   also on 7-bit bins, then Lloyd on the exact colours until it converges;
3. each distinct colour's nearest palette entry found once, and every pixel remapped
   through that lookup table (or, with ``dither``, error diffusion in Cython).
"""

import numbers
import os

import numpy as np

from .._init import kmeans_plusplus
from .._isa import core
from .._lloyd import lloyd
from .._swap import swap_refine
from .._validation import check_random_state, effective_n_threads
from . import _io
from ._color import oklab_to_srgb, srgb_to_oklab

COLORSPACES = ("rgb", "oklab")
# From this many pixels on, an RGB histogram is one parallel counting pass over 2**24 bins;
# below, a sort of the pixels' colour keys is cheaper.
COUNTING_MIN_PIXELS = 1 << 20
# Above this many distinct colours, clustering starts on 6-bit bins (3 to 25 times fewer
# points) before the exact colours; below it the exact colours are cheap enough. (On
# Kodak, from 65536 down to 16384: 2x less time at K=16 and 64, mean PSNR within 0.004 dB;
# at 8192 the start begins to lose.) Above
# FINE_MIN_COLOURS (large photos, resampled ones above all), Lloyd on 7-bit bins (about 4x
# fewer points) comes in between: on a 12-megapixel photo at K=256 it halves the iterations
# on the exact colours, for 0.03% more error.
COARSE_MIN_COLOURS = 16384
FINE_MIN_COLOURS = 1 << 19
# Relative tolerances (as KMeans' tol) of the iterations: of the start (k-means++, Lloyd and
# the swap trials, on 6-bit bins or on few exact colours), on 7-bit bins and on the exact
# colours. The start's only job is to pick the basin: the later stages converge inside it.
START_TOL = 1e-4
COARSE_TOL = 1e-5
EXACT_TOL = 1e-4
SMALL_K_EXACT_TOL = 1e-6
# Swap refinement (see fastkm._swap) up to this K: at small K it finds a better local
# minimum (mean PSNR on Kodak at K=16: +0.07 dB with 16 trials); at large K its cost
# outweighs the gain.
SMALL_K = 64
SWAP_TRIALS = 16
# Dithering (0-255 units, RGB distance). A pixel takes incoming error in proportion to its
# own undithered error, fully from ACCEPT_FULL_ERROR on: a pixel its palette already matches
# (flat areas) stays clean instead of turning into speckle. Diffused errors longer than
# MAX_DITHER_ERROR are shrunk. Chosen on Kodak to keep both the PSNR and the PSNR after a 3x3
# blur (how well local averages are kept, what dithering is for) above libimagequant's
# dithered output at K = 16, 64 and 256 (BENCHMARKS.md).
ACCEPT_FULL_ERROR = 16.0
MAX_DITHER_ERROR = 16.0


class QuantizedImage:
    """An image reduced to a palette: what :func:`quantize` and :func:`apply_palette` return.

    Attributes
    ----------
    palette : ndarray of shape (K, 3) or (K, 4), uint8
        The colours (RGBA when the image has transparency).
    indices : ndarray of shape (H, W), uint8
        Palette index of each pixel.
    mse : float
        Mean squared error per channel (0-255 scale) against the source image, over its
        channels: RGB, or RGBA when it has transparency (an opaque source counts as RGBA
        with alpha 255 only when :func:`apply_palette` matches it against partially
        transparent entries). Fully transparent pixels count as exact.
    psnr : float
        Peak signal-to-noise ratio in dB, ``10 log10(255**2 / mse)`` (inf when exact).
    icc_profile : bytes or None
        The source's ICC profile, written back by :meth:`save`.
    metadata : dict or None
        The source's gamma, sRGB intent, chromaticities and resolution, as the
        ``metadata`` of :func:`load_image`'s result; written back by :meth:`save`.
    """

    def __init__(self, palette, indices, mse, icc_profile=None, metadata=None):
        self.palette = palette
        self.indices = indices
        self.mse = float(mse)
        self.icc_profile = icc_profile
        self.metadata = metadata

    @property
    def psnr(self):
        return float("inf") if self.mse == 0 else float(10 * np.log10(255.0 ** 2 / self.mse))

    def __repr__(self):
        h, w = self.indices.shape
        return (f"QuantizedImage({w}x{h}, {len(self.palette)} colours, "
                f"psnr={self.psnr:.2f} dB)")

    def to_array(self):
        """The quantized image as an (H, W, 3) or (H, W, 4) uint8 array."""
        return self.palette[self.indices]

    def to_pil(self):
        """The quantized image as a Pillow image of mode 'P' with this palette."""
        return _io.to_pil(self.palette, self.indices)

    def save(self, path, *, overwrite=False, **options):
        """Write the image in the format its file extension names.

        ``.png``: an indexed PNG. It is encoded at the lowest bit depth that holds the
        palette (1, 2, 4 or 8 bits) and, for 16 colours or fewer, at 8 bits too; the
        smaller file is kept (zlib often packs whole-byte indices better; an 8-bit file's
        palette repeats the last colour up to 17 entries, for the same pixels).
        ``.gif``: a GIF (one transparent entry at most: the least opaque, when its alpha
        is below 128). ``.jpg``, ``.jpeg``, ``.webp`` (lossless), ``.tif``, ``.tiff`` and
        ``.bmp``: truecolour RGB(A); JPEG and BMP keep no alpha, so they are composited
        over white.
        The source's ICC profile is embedded where the format allows it (PNG, JPEG, WebP,
        TIFF), and so is its ``metadata``: gamma, sRGB intent and chromaticities in PNG
        (no sRGB beside an ICC profile), the resolution in PNG, JPEG, TIFF and BMP. The
        file is written under a temporary name beside ``path`` and renamed at the end, so
        an error or Ctrl-C never leaves a partial file.

        Parameters
        ----------
        path : str or os.PathLike
        overwrite : bool, default=False
            Replace an existing file; otherwise an existing file raises FileExistsError.
        **options
            ``compress_level`` (int in [0, 9]): the PNG zlib level, for faster saves; by
            default Pillow's ``optimize`` (the highest level) is used. Other formats
            ignore it. There is no other option.

        Returns
        -------
        int
            The number of bytes written.

        Raises
        ------
        ValueError
            If the extension is unknown, ``compress_level`` is not an integer from 0 to 9,
            or the image is larger than the format allows (GIF 65535, JPEG 65500, WebP
            16383 pixels a side).
        FileExistsError
            If ``path`` exists and ``overwrite`` is false.
        OSError
            If the folder is missing or not writable, naming the path.
        """
        return _io.save_quantized(path, self.palette, self.indices,
                                  icc_profile=self.icc_profile, overwrite=overwrite,
                                  metadata=self.metadata, **options)


def quantize(image, n_colors=16, *, colorspace="rgb", dither=False, random_state=0, n_init=1,
             max_iter=300, n_threads=None):
    """Reduce an image to its ``n_colors`` most representative colours.

    The palette minimizes the squared error over all pixels (k-means, so the PSNR is as high
    as k-means gets it) in RGB, or in the perceptual Oklab space with ``colorspace='oklab'``.
    The same input and options give the same palette and indices on any thread count.

    Parameters
    ----------
    image : str, path, PIL.Image or ndarray
        A file Pillow can read, an image, or an (H, W, 3|4) uint8, uint16 or [0, 1] float
        array. Fully transparent pixels are left out of the clustering and get one
        transparent palette entry; partial transparency gives an RGBA palette.
    n_colors : int, default=16
        Palette size, 1 to 256. An image with fewer distinct colours keeps them exactly.
    colorspace : {'rgb', 'oklab'}, default='rgb'
        The space whose squared distances the k-means minimizes: 'rgb' (the sRGB values,
        in which ``mse`` and ``psnr`` are measured: the highest PSNR) or 'oklab' (a
        perceptual space: errors weighted more as the eye sees them, at a lower PSNR).
    dither : bool or float, default=False
        False for none; True or a strength in (0, 1] for Floyd-Steinberg error diffusion
        (serpentine), weakened where it would only add noise. The diffused colours are
        matched to the palette in RGB, whatever ``colorspace``; images with partial
        transparency cannot be dithered.
    random_state : int, RandomState or None, default=0
        Seed of the weighted k-means++ start; fixed by default so results repeat.
    n_init : int, default=1
        Starts to try; the palette with the lowest error is kept.
    max_iter : int, default=300
        Lloyd iterations per stage.
    n_threads : int or None, default=None
        Threads for the kernels (None: all usable cores).

    Returns
    -------
    QuantizedImage

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm.image import quantize
    >>> rng = np.random.default_rng(0)
    >>> image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    >>> q = quantize(image, n_colors=8)
    >>> q.palette.shape, q.indices.shape, q.to_array().shape
    ((8, 3), (64, 64), (64, 64, 3))
    >>> 0 < q.psnr < 30
    True
    """
    loaded = _io.load_image(image)
    histogram = _Histogram(loaded.pixels, n_threads)
    palette = _fit_palette(histogram, n_colors, colorspace, random_state, n_init, max_iter,
                           n_threads)
    return _apply(loaded, histogram, palette, colorspace, dither, n_threads)


def fit_palette(images, n_colors=16, *, colorspace="rgb", random_state=0, n_init=1,
                max_iter=300, n_threads=None):
    """One palette for several images: k-means of their pooled colour histogram.

    Use the result with :func:`apply_palette`.

    Parameters
    ----------
    images : sequence of images, or one image
        Each one a path, PIL image or array, as the ``image`` of :func:`quantize`. Their
        pixels are pooled: each pixel counts once, so larger images weigh more.
    n_colors, colorspace, random_state, n_init, max_iter, n_threads
        As for :func:`quantize`. (There is no ``dither``: it belongs to
        :func:`apply_palette`.)

    Returns
    -------
    ndarray of shape (K, 3) or (K, 4), uint8
        K is ``n_colors``, or fewer when the images have fewer distinct colours. RGBA
        when some image has transparency; a fully transparent entry, if any, comes last.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm.image import apply_palette, fit_palette
    >>> a = np.zeros((8, 8, 3), np.uint8); b = np.full((8, 8, 3), 200, np.uint8)
    >>> palette = fit_palette([a, b], n_colors=2)
    >>> palette.tolist()
    [[0, 0, 0], [200, 200, 200]]
    >>> apply_palette(b, palette).indices[0, :3].tolist()
    [1, 1, 1]
    """
    if isinstance(images, (str, bytes, os.PathLike)) or hasattr(images, "shape") or \
            hasattr(images, "getpixel"):
        images = [images]
    pixels = [_io.load_image(image).pixels for image in images]
    if not pixels:
        raise ValueError("fit_palette needs at least one image")
    channels = 4 if any(p.shape[2] == 4 for p in pixels) else 3
    flat = np.concatenate([_with_channels(p, channels).reshape(-1, channels) for p in pixels])
    histogram = _Histogram(flat[None], n_threads)
    return _fit_palette(histogram, n_colors, colorspace, random_state, n_init, max_iter,
                        n_threads)


def apply_palette(image, palette, *, colorspace="rgb", dither=False, n_threads=None):
    """Map an image onto a given palette (nearest colour, or dithered).

    Parameters
    ----------
    image : str, path, PIL.Image or ndarray
        The image to map, as for :func:`quantize`: a file Pillow can read, an image, or an
        (H, W, 3|4) uint8, uint16 or [0, 1] float array.
    palette : array-like of shape (K, 3) or (K, 4), 0-255 values, K <= 256
        Visible pixels are matched only against the visible entries (alpha above 0, or
        every entry of an RGB palette); fully transparent pixels take the first fully
        transparent entry (alpha 0), which is appended when the palette has none.
    colorspace, dither, n_threads
        As for :func:`quantize`; ``colorspace`` sets the metric of "nearest".

    Returns
    -------
    QuantizedImage
        Its palette is ``palette``, as RGBA when the image has transparency, plus the
        appended transparent entry if one was needed.
    """
    if colorspace not in COLORSPACES:
        raise ValueError(f"colorspace must be one of {COLORSPACES}, got {colorspace!r}")
    palette = _check_palette(palette)
    loaded = _io.load_image(image)
    # An RGB image needs no alpha for an RGBA palette: _apply matches its colours to the
    # visible entries, and its error stays one over the source's own 3 channels.
    if palette.shape[1] == 3 and loaded.pixels.shape[2] == 4:
        palette = _with_alpha(palette, 4)
    histogram = _Histogram(loaded.pixels, n_threads)
    if histogram.n_transparent and not (palette[:, 3] == 0).any():
        if len(palette) == 256:
            raise ValueError("the image has fully transparent pixels but the palette has no "
                             "fully transparent entry (alpha 0) and no room to add one: it "
                             "already has 256 colours")
        palette = np.concatenate([palette, np.zeros((1, 4), np.uint8)])
    return _apply(loaded, histogram, palette, colorspace, dither, n_threads)


# -- the histogram -------------------------------------------------------------------------


class _Histogram:
    """The distinct colours of an (H, W, C) uint8 image and their pixel counts.

    ``colours`` is (m, C) uint8 and ``counts`` (m,) int64; for RGB, ``keys`` are the 24-bit
    colours ``r << 16 | g << 8 | b`` in increasing order. ``remap`` turns one label per
    distinct colour into one per pixel. Fully transparent pixels (alpha 0) are
    left out of the counts; ``n_transparent`` counts them. An image whose alpha is only 0
    or 255 is histogrammed as RGB.
    """

    def __init__(self, pixels, n_threads):
        self.n_threads = effective_n_threads(n_threads)
        self.shape = pixels.shape[:2]
        self.channels = pixels.shape[2]
        flat = pixels.reshape(-1, self.channels)
        self.transparent = None
        if self.channels == 4:
            alpha = flat[:, 3]
            if (alpha == 0).any():
                self.transparent = alpha == 0
            if (alpha[alpha > 0] == 255).all():  # no partial alpha: an RGB histogram
                flat = np.ascontiguousarray(flat[:, :3])
        self.n_transparent = 0 if self.transparent is None else int(self.transparent.sum())
        self.pixels = flat
        self._inverse = None
        if flat.shape[1] == 4:
            self._sort_rgba()
        elif len(flat) >= COUNTING_MIN_PIXELS:
            self._count_rgb()
        else:
            self._sort_rgb()

    def _count_rgb(self):
        """The 2**24-bin counting pass: one parallel sweep, for large images."""
        counts = np.zeros(1 << 24, dtype=np.uint32)
        core.rgb_histogram(self.pixels, counts, self.n_threads)
        if self.transparent is not None:  # transparent pixels were counted too
            counts -= np.bincount(_rgb_keys(self.pixels[self.transparent]),
                                  minlength=1 << 24).astype(np.uint32)
        self.keys, self.counts, self.colours = core.histogram_colours(counts, self.n_threads)

    def _sort_rgb(self):
        """A sort of the visible pixels' 24-bit keys: cheaper than 2**24 bins for small
        images. (A sort without the inverse permutation: pixels are remapped by key.)"""
        keys = _rgb_keys(self.pixels if self.transparent is None else
                         self.pixels[~self.transparent])
        keys.sort()
        starts = np.empty(len(keys), dtype=bool)  # where each run of one key starts
        starts[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        first = np.flatnonzero(starts)
        self.keys = keys[first]
        self.counts = np.diff(np.append(first, len(keys))).astype(np.int64)
        self.colours = _rgb_colours(self.keys)

    def _sort_rgba(self):
        """Distinct RGBA colours (partial transparency) by a sort of their 32-bit keys."""
        keys = self.pixels.view(np.uint32).reshape(-1)
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        if self.transparent is not None:
            counts = counts - np.bincount(inverse[self.transparent], minlength=len(unique))
        kept = counts > 0
        self.keys, self.counts = unique[kept], counts[kept].astype(np.int64)
        # Colours seen only in transparent pixels are dropped; those pixels get index 0
        # here and the transparent entry later.
        self._inverse = np.maximum(np.cumsum(kept) - 1, 0)[inverse]
        self.colours = np.ascontiguousarray(self.keys).view(np.uint8).reshape(-1, 4)

    def remap(self, labels):
        """Per-pixel palette indices, (H, W) uint8, from one label per distinct colour."""
        labels = labels.astype(np.uint8)
        if self._inverse is not None:
            return labels[self._inverse].reshape(self.shape)
        lookup = np.zeros(1 << 24, dtype=np.uint8)
        lookup[self.keys] = labels
        indices = np.empty(len(self.pixels), dtype=np.uint8)
        core.remap_rgb(self.pixels, lookup, indices, self.n_threads)
        return indices.reshape(self.shape)


def _rgb_colours(keys):
    return np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255],
                    axis=1).astype(np.uint8)


def _rgb_keys(rgb):
    rgb = rgb.astype(np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def _with_channels(pixels, channels):
    if pixels.shape[2] == channels:
        return pixels
    opaque = np.full(pixels.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.concatenate([pixels, opaque], axis=2)


# -- fitting the palette ---------------------------------------------------------------------


def _fit_palette(histogram, n_colors, colorspace, random_state, n_init, max_iter, n_threads):
    """k-means of the histogram's colours; the palette as uint8, transparent entry last."""
    if not isinstance(n_colors, numbers.Integral) or isinstance(n_colors, bool) or \
            not 1 <= n_colors <= 256:
        raise ValueError(f"n_colors must be an integer from 1 to 256, got {n_colors!r}")
    if colorspace not in COLORSPACES:
        raise ValueError(f"colorspace must be one of {COLORSPACES}, got {colorspace!r}")
    if not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")
    if not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    random_state = check_random_state(random_state)
    n_threads = effective_n_threads(n_threads)
    has_transparent = int(histogram.n_transparent > 0)
    n_visible = n_colors - has_transparent
    colours = histogram.colours
    transparent_entry = np.zeros((has_transparent, histogram.channels), np.uint8)
    if len(colours) == 0:  # nothing visible: only the transparent entry
        return transparent_entry
    if n_visible < 1:
        raise ValueError("n_colors must be at least 2 for an image with transparent and "
                         "visible pixels")
    if len(colours) <= n_visible:  # few enough colours to keep them all exactly
        return np.concatenate([_with_alpha(colours, histogram.channels), transparent_entry])

    points = _to_space(colours, colorspace)
    weights = histogram.counts.astype(np.float32)
    best_centres, best_error = None, np.inf
    for _ in range(n_init):
        centres = _kmeans_colours(histogram, points, weights, n_visible, random_state,
                                  max_iter, n_threads)
        palette = _from_space(centres, colorspace)
        if n_init == 1:  # nothing to compare with
            return np.concatenate([_with_alpha(palette, histogram.channels),
                                   transparent_entry])
        labels = _nearest(points, weights, _to_space(palette, colorspace), n_threads)[0]
        error = _squared_error(colours, histogram.counts, palette, labels)
        if error < best_error:
            best_centres, best_error = palette, error
    return np.concatenate([_with_alpha(best_centres, histogram.channels), transparent_entry])


def _with_alpha(palette, channels):
    """RGB colours (a palette, or a histogram's) as opaque RGBA where channels = 4."""
    if palette.shape[1] == channels:
        return palette
    return np.concatenate([palette, np.full((len(palette), 1), 255, np.uint8)], axis=1)


def _kmeans_colours(histogram, points, weights, n_clusters, random_state, max_iter,
                    n_threads):
    """Centres of the weighted k-means of ``points``.

    With many distinct colours, the start (k-means++, Lloyd to convergence, swaps)
    runs on 6-bit bins, about 10 to 25 times fewer points, with very many also Lloyd on
    7-bit bins, and only the last iterations on the exact colours.
    """
    start_points, start_weights = points, weights
    # 7-bit bins need 7 bits a channel of cell index: RGB only (RGBA would take 2**28 cells).
    fine_stage = len(points) > FINE_MIN_COLOURS and points.shape[1] == 3
    if fine_stage:  # 7-bit bins, then 6-bit ones pooled from them
        fine = core.pool_cells(histogram.colours, 1, points, weights)
        coarse = core.pool_cells(fine[2], 2, *fine[:2])
    elif len(points) > COARSE_MIN_COLOURS:
        coarse = core.pool_cells(histogram.colours, 2, points, weights)
    if len(points) > COARSE_MIN_COLOURS:
        start_points, start_weights = _as_points(*coarse[:2])
    centres, _ = kmeans_plusplus(start_points, n_clusters, start_weights, random_state,
                                 n_threads)
    centres = swap_refine(start_points, start_weights, centres,
                          max_trials=SWAP_TRIALS if n_clusters <= SMALL_K else 0,
                          tol=START_TOL * _variance(start_points, start_weights, n_threads),
                          max_iter=max_iter, random_state=random_state,
                          n_threads=n_threads)[0]
    if fine_stage:
        fine_points, fine_weights = _as_points(*fine[:2])
        centres = lloyd(fine_points, fine_weights, centres, max_iter=max_iter,
                        tol=COARSE_TOL * _variance(fine_points, fine_weights, n_threads),
                        n_threads=n_threads, algorithm="auto", centres_only=True)[0]
    exact_tol = SMALL_K_EXACT_TOL if n_clusters <= SMALL_K else EXACT_TOL
    # The palette is rounded to 0-255 before the colours are mapped to it, so the final
    # centres are not labelled here.
    return lloyd(points, weights, centres, max_iter=max_iter,
                 tol=exact_tol * _variance(points, weights, n_threads), n_threads=n_threads,
                 algorithm="auto", centres_only=True)[0]


def _as_points(points, weights):
    return np.ascontiguousarray(points, dtype=np.float32), weights.astype(np.float32)


def _variance(points, weights, n_threads):
    """Weighted mean over features of the per-feature variance, by two parallel passes of
    the one-centre Lloyd kernel: the weighted mean, then the inertia about it."""
    labels = np.empty(len(points), dtype=np.int32)
    sums, weight_sum = np.empty((1, points.shape[1])), np.empty(1)
    core.lloyd_pass(points, weights, points[:1], labels, sums, weight_sum, n_threads)
    mean = (sums / weight_sum[0]).astype(points.dtype)
    inertia, _ = core.lloyd_pass(points, weights, mean, labels, sums, weight_sum, n_threads)
    return inertia / (weight_sum[0] * points.shape[1])


def _to_space(colours, colorspace):
    """Colours (0-255, RGB or RGBA) as float32 points of the clustering space."""
    colours = np.asarray(colours, dtype=np.float64)
    if colorspace == "oklab":
        # Oklab's L spans [0, 1]; 255 puts it on the scale of the alpha channel.
        lab = srgb_to_oklab(colours[:, :3]) * 255.0
        colours = np.concatenate([lab, colours[:, 3:]], axis=1)
    return np.ascontiguousarray(colours, dtype=np.float32)


def _from_space(points, colorspace):
    """Cluster centres back to 0-255 uint8 colours (rounded, clipped)."""
    points = np.asarray(points, dtype=np.float64)
    if colorspace == "oklab":
        rgb = oklab_to_srgb(points[:, :3] / 255.0)
        points = np.concatenate([rgb, points[:, 3:]], axis=1)
    return np.clip(np.rint(points), 0, 255).astype(np.uint8)


def _nearest(points, weights, centres, n_threads):
    """Nearest centre of each point (ties: lowest index) and the weighted squared error."""
    centres = np.ascontiguousarray(centres, dtype=np.float32)
    labels = np.empty(len(points), dtype=np.int32)
    error, _ = core.lloyd_pass(points, weights, centres, labels,
                            np.empty(centres.shape, np.float64), np.empty(len(centres)),
                            n_threads)
    return labels, error


def _squared_error(colours, counts, palette, labels):
    """Summed squared 0-255 error over all channels and pixels of a histogram's colours."""
    # Integer differences: exact in float32, and so are their squared sums (< 2**24).
    diff = colours.astype(np.float32) - palette.astype(np.float32)[labels]
    per_colour = np.einsum("ij,ij->i", diff, diff)
    return float(np.einsum("i,i->", per_colour.astype(np.float64), counts.astype(np.float64)))


def _check_palette(palette):
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] not in (3, 4) or not 1 <= len(palette) <= 256:
        raise ValueError(f"palette must have shape (K, 3) or (K, 4) with 1 <= K <= 256, got "
                         f"{palette.shape}")
    if palette.dtype.kind not in "uif" or not np.isfinite(palette).all() or \
            (palette < 0).any() or (palette > 255).any():
        raise ValueError("palette values must be numbers from 0 to 255")
    return np.rint(palette).astype(np.uint8)


# -- mapping pixels to the palette -------------------------------------------------------------


def _apply(loaded, histogram, palette, colorspace, dither, n_threads):
    """Map the image's pixels onto ``palette`` and measure the error.

    Visible pixels go to the visible entries (alpha above 0), fully transparent ones to the
    first fully transparent entry, which the palette must have if the image has such pixels.
    The mse is per channel of the source (``loaded.pixels``), or of RGBA where an opaque
    source's alpha is compared with translucent entries.
    """
    n_threads = effective_n_threads(n_threads)
    strength = _check_dither(dither)
    n_pixels = histogram.shape[0] * histogram.shape[1]
    channels = palette.shape[1]
    visible = np.arange(len(palette)) if channels == 3 else np.flatnonzero(palette[:, 3] > 0)
    transparent_index = 0 if channels == 3 else int(np.argmax(palette[:, 3] == 0))
    if len(histogram.colours) == 0:
        indices = np.full(histogram.shape, transparent_index, np.uint8)
        return QuantizedImage(palette, indices, 0.0, loaded.icc_profile, loaded.metadata)
    if len(visible) == 0:
        raise ValueError("the palette has no visible entry (alpha above 0) for the image's "
                         "visible pixels")
    visible_palette = palette[visible]
    colours = histogram.colours
    if colours.shape[1] != visible_palette.shape[1]:  # binary alpha, RGBA palette
        if (visible_palette[:, 3] == 255).all():
            visible_palette = visible_palette[:, :3]
        else:  # translucent entries: the opaque pixels' alpha counts in the distance
            colours = _with_alpha(colours, 4)
    # The channels the error is over: the source's, alpha included when it was compared.
    compared = max(loaded.pixels.shape[2], colours.shape[1])
    points = _to_space(colours, colorspace)
    labels, error = _nearest(points, histogram.counts.astype(np.float32),
                             _to_space(visible_palette, colorspace), n_threads)
    if strength:
        indices = _dither(histogram, visible_palette, labels, strength)
        squared = _pixel_squared_error(histogram, visible_palette, indices.reshape(-1))
        if len(visible) < len(palette):
            indices = visible.astype(np.uint8)[indices]
    else:
        # In RGB the pass's error is already exact (integer colours and counts, float32
        # squared distances below 2**24, float64 sums) while the counts fit float32.
        squared = error if colorspace == "rgb" and histogram.counts.max() <= 1 << 24 else \
            _squared_error(colours, histogram.counts, visible_palette, labels)
        indices = histogram.remap(visible[labels])
    if histogram.transparent is not None:
        indices.reshape(-1)[histogram.transparent] = transparent_index
    return QuantizedImage(palette, indices, squared / (n_pixels * compared), loaded.icc_profile,
                          loaded.metadata)


def _pixel_squared_error(histogram, palette, indices):
    """Summed squared error over the visible pixels, a million pixels at a time."""
    squared = 0.0
    step = 1 << 20
    for start in range(0, len(indices), step):
        rows = slice(start, start + step)
        diff = histogram.pixels[rows].astype(np.float32) - palette[indices[rows]]
        if histogram.transparent is not None:
            diff[histogram.transparent[rows]] = 0
        squared += float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    return squared


def _check_dither(dither):
    if dither is False or dither is None:
        return 0.0
    if dither is True:
        return 1.0
    if isinstance(dither, numbers.Real) and 0 < dither <= 1:
        return float(dither)
    raise ValueError(f"dither must be False, True or a strength in (0, 1], got {dither!r}")


def _dither(histogram, palette, labels, strength):
    """Error-diffused palette indices, (H, W) uint8, for an RGB (or binary-alpha) image."""
    if histogram.colours.shape[1] != 3 or palette.shape[1] != 3:  # RGBA matching
        raise ValueError("dithering is not supported with partial transparency (in the "
                         "image or in the palette's visible entries); use dither=False")
    h, w = histogram.shape
    image = histogram.pixels.reshape(h, w, 3)
    skip = np.zeros((h, w), np.uint8) if histogram.transparent is None else \
        histogram.transparent.reshape(h, w).view(np.uint8)
    # 1 + each colour's nearest palette index, 0 where not known yet (np.zeros maps the
    # table's pages lazily: only those of the colours met cost time).
    nearest = np.zeros(1 << 24, dtype=np.int16)
    nearest[histogram.keys] = labels + 1
    indices = np.zeros((h, w), np.uint8)  # skipped (transparent) pixels stay 0
    core.dither_rgb(image, skip, palette.astype(np.float32), ACCEPT_FULL_ERROR, nearest,
                    strength, MAX_DITHER_ERROR, indices)
    return indices
