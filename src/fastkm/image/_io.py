"""Reading images into RGB(A) arrays and writing quantized images, safely.

:func:`load_image` turns a path, a ``PIL.Image`` or a NumPy array into a C-contiguous uint8
RGB or RGBA array, whatever the source mode, with the EXIF orientation applied; every
failure (missing, corrupt or truncated file, decompression bomb, zero-size image, wrong
array) is a one-sentence exception that names the file.

:func:`save_quantized` writes a palette and an index image: an indexed PNG (the smaller of
the lowest-bit-depth and the 8-bit encodings), a GIF, or a truecolour format, with the
source's ICC profile, gamma, sRGB intent, chromaticities and resolution where the format
stores them; it writes a temporary file beside the target and renames it, so an error or
Ctrl-C never leaves a partial file. :func:`save_image` writes
any Pillow image (the compare picture) the same way; :func:`output_format` maps an output
file name to its format, or refuses it.
"""

import errno
import io
import math
import numbers
import os
import struct
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

#: Output formats by file extension (Pillow's format names). PNG and GIF store a palette.
FORMATS = {
    ".png": "PNG",
    ".gif": "GIF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

#: Save options per truecolour format. A quantized image has few colours and hard edges:
#: lossless WebP (``exact`` keeps the colours under alpha 0) and deflated TIFF keep it
#: exact and small; JPEG can only approximate it, so it gets a high quality and no chroma
#: subsampling.
TRUECOLOUR_OPTIONS = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True, "exact": True},
    "TIFF": {"compression": "tiff_adobe_deflate"},
    "BMP": {},
}

#: The most pixels a side of each format with a limit below Pillow's own (beyond it the
#: encoders fail with unclear messages).
MAX_SIDE = {"GIF": 65535, "JPEG": 65500, "WEBP": 16383}

#: Formats that cannot store an ICC profile (Pillow writes none for them).
NO_ICC = {"GIF", "BMP"}

#: Formats without an alpha channel that readers honour (Pillow's 32-bit BMP reads back as
#: RGB): transparent pixels are composited over white.
NO_ALPHA = {"JPEG", "BMP"}

#: Pillow modes with an alpha band (LAB's "A" band is a colour axis, not alpha).
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}

#: Pillow modes holding 16-bit samples (16-bit grayscale PNG and TIFF files open as these).
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}

#: The EXIF tag of the orientation (ExifTags.Base.Orientation).
EXIF_ORIENTATION = 0x0112

#: The scale Pillow applies to 2- and 4-bit grayscale PNG samples (to 0..255), by raw mode;
#: it leaves a tRNS grey key unscaled, so the key is scaled here.
GREY_KEY_SCALE = {"L;2": 85, "L;4": 17}

#: The keys of ``LoadedImage.metadata``: Pillow's ``info`` names of the PNG gAMA, sRGB,
#: cHRM and pHYs chunks (``dpi`` is also what JPEG, TIFF and BMP files give).
METADATA_KEYS = ("gamma", "srgb", "chromaticity", "dpi")

#: Formats :func:`save_quantized` writes a resolution (``dpi``) to; PNG also takes the
#: other ``METADATA_KEYS``. GIF and WebP (in Pillow) store none of them.
DPI_FORMATS = {"PNG", "JPEG", "TIFF", "BMP"}


class LoadedImage(NamedTuple):
    """What :func:`load_image` returns.

    Attributes
    ----------
    pixels : ndarray of shape (H, W, 3) or (H, W, 4), uint8, C-contiguous
        RGB, or RGBA when at least one pixel is not fully opaque.
    icc_profile : bytes or None
        The source's embedded ICC profile when it describes RGB data; None otherwise
        (a grayscale or CMYK profile would be wrong on RGB pixels).
    path : pathlib.Path or None
        The file the image came from, when known.
    metadata : dict or None
        The source's colour and size metadata that :meth:`QuantizedImage.save` (through
        :func:`save_quantized`) writes back, under Pillow's ``info`` names, only those
        present and valid: ``'gamma'`` (float, PNG gAMA), ``'srgb'`` (int 0-3, the PNG sRGB
        rendering intent), ``'chromaticity'`` (8 floats, PNG cHRM: white point, red, green
        and blue x, y) and ``'dpi'`` (2 floats, from PNG pHYs or a JPEG, TIFF or BMP
        resolution; swapped when the EXIF orientation turns the image by 90 degrees).
        :func:`load_image` gives a dict, empty for an array; None (the default) stands for
        none.
    """

    pixels: np.ndarray
    icc_profile: bytes | None
    path: Path | None
    metadata: dict | None = None


def load_image(image):
    """Read an image as a uint8 RGB or RGBA array, its ICC profile, path and metadata.

    Parameters
    ----------
    image : str, os.PathLike, PIL.Image.Image or ndarray
        A file Pillow can open (any mode: P with or without transparency, 1, L, LA, RGB,
        RGBA, CMYK, I;16, I, F, 16-bit PNG; only the first frame of an animation), an
        image already opened with Pillow, or an array of shape (H, W), (H, W, 3) or
        (H, W, 4) with dtype uint8, uint16 (scaled by 1/257) or float in [0, 1].
        Modes I and I;16 are always read as 16-bit samples, 0..65535 (scaled by 1/257,
        clipped), since 16-bit grayscale PNG and TIFF files open in them; an image
        built in memory with 0..255 values in mode I (``convert('I')``, an int32 array)
        therefore comes out nearly black: convert it to mode L first.
        The tRNS key of a 2- or 4-bit grayscale PNG (which Pillow leaves unscaled while
        it scales the pixels to 0..255) is applied when the file is read here or the
        image was opened but not yet loaded; an image the caller already loaded no longer
        tells its bit depth, so its key is taken as Pillow gives it.

    Returns
    -------
    LoadedImage
        ``(pixels, icc_profile, path, metadata)``. ``pixels`` has 4 channels only when
        some alpha value is below 255. The EXIF orientation is applied.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is not an image, is truncated or corrupt, has zero size, exceeds
        ``PIL.Image.MAX_IMAGE_PIXELS`` (checked before any pixel is decoded; this holds
        for a path and for an image opened from a file, not for one built in memory,
        which is accepted like the same array), or if the array has the wrong shape,
        dtype or range.
    TypeError
        If ``image`` is none of the accepted types.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm.image import load_image
    >>> gray = np.array([[0.0, 1.0]])
    >>> load_image(gray).pixels.tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    """
    if isinstance(image, (str, os.PathLike)):
        return _load_path(Path(image))
    if isinstance(image, Image.Image):
        filename = getattr(image, "filename", "")
        name = filename or "the PIL image"
        # The pixel limit guards decoding: an image built in memory (Image.new, fromarray)
        # is decoded already, so only one read from a file is held to it.
        _check_size(image, name, limited=isinstance(image, ImageFile.ImageFile))
        key_scale = _grey_key_scale(image)
        _decode(image, name)
        return _from_pil(image, name, Path(filename) if filename else None, key_scale)
    if isinstance(image, np.ndarray):
        return LoadedImage(_array_pixels(image), None, None, {})
    raise TypeError(f"image must be a path, a PIL.Image or a NumPy array, "
                    f"not {type(image).__name__}")


def _load_path(path):
    """Open, check and decode one file; every Pillow failure becomes a ValueError."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not an image")
    # Pillow only warns between MAX_IMAGE_PIXELS and twice that; as an error, both cases
    # stop at the header, before the pixels are decoded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            opened = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"{path}: refused as a possible decompression bomb ({exc})") \
                from None
        except UnidentifiedImageError:
            # Pillow also lands here for headers it rejects, zero width or height included.
            raise ValueError(f"{path}: not an image Pillow can read (unknown format or a "
                             f"damaged header)") from None
        except PermissionError:
            raise
        except Exception as exc:  # Pillow's plugins raise many types on a bad header
            raise ValueError(f"{path}: cannot read the image: {exc}") from None
    with opened:
        _check_size(opened, path)
        key_scale = _grey_key_scale(opened)
        _decode(opened, path)
        return _from_pil(opened, path, path, key_scale)


def _check_size(img, name, limited=True):
    """Refuse zero-size images and, if ``limited``, decompression bombs from the header."""
    width, height = img.size
    if width == 0 or height == 0:
        raise ValueError(f"{name}: zero-size image ({width} x {height} pixels)")
    limit = Image.MAX_IMAGE_PIXELS
    if limited and limit is not None and width * height > limit:
        raise ValueError(f"{name}: refused as a possible decompression bomb: {width} x "
                         f"{height} pixels exceeds the limit of {limit} "
                         f"(PIL.Image.MAX_IMAGE_PIXELS)")


def _decode(img, name):
    """Decode every pixel now, so that a truncated or corrupt file fails here."""
    try:
        img.load()
    except Exception as exc:  # OSError, SyntaxError, zlib/struct errors from the decoders
        raise ValueError(f"{name}: the image is truncated or corrupt ({exc})") from None


def _grey_key_scale(img):
    """85 or 17 for a 2- or 4-bit grayscale PNG with a tRNS key, else None; read from the
    raw mode of the image's tile, so before it is loaded (loading clears the tile)."""
    if img.mode != "L" or not isinstance(img.info.get("transparency"), int) \
            or getattr(img, "format", None) != "PNG" or not img.tile:
        return None
    args = img.tile[0][3]
    return GREY_KEY_SCALE.get(args[0] if isinstance(args, tuple) and args else args)


def _from_pil(img, name, path, key_scale=None):
    """A decoded Pillow image as a LoadedImage, orientation applied; ``key_scale`` scales
    the tRNS key of a 2- or 4-bit grayscale PNG (see :func:`_grey_key_scale`)."""
    metadata = _read_metadata(img.info)
    try:
        # exif_transpose copies even an upright image (36 MB and 30 ms at 12 megapixels).
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
            if orientation in (5, 6, 7, 8) and "dpi" in metadata:  # turned by 90 degrees
                metadata["dpi"] = metadata["dpi"][::-1]
    except Exception:  # a malformed EXIF block must not lose the picture; keep it as is
        pass
    icc_profile = img.info.get("icc_profile") or None
    if img.mode == "CMYK":
        rgb = _cmyk_to_rgb(img, icc_profile)
    elif img.mode in SIXTEEN_BIT_MODES:
        rgb = _grey_key_pixels(np.asarray(img, dtype=np.int64), img.info.get("transparency"),
                               _scale_16bit)
    elif img.mode == "F":
        rgb = _gray_to_rgb(_float_pixels(img, name))
    elif key_scale is not None:
        rgb = _grey_key_pixels(np.asarray(img), img.info["transparency"] * key_scale)
    else:
        rgb = _convert_8bit(img, name)
    if not _is_rgb_profile(icc_profile):
        icc_profile = None
    return LoadedImage(_drop_opaque_alpha(rgb), icc_profile, path, metadata)


def _grey_key_pixels(values, key, scale=None):
    """Grey values as RGB, or RGBA where they equal an int tRNS grey ``key``.

    Used where Pillow's ``convert('RGBA')`` loses the key: 16-bit grayscale PNGs (which
    open as I;16, or as I before Pillow 10.3; ``scale=_scale_16bit``, the key compared
    with the raw 16-bit values) and 2- or 4-bit ones (the key scaled by the caller).
    """
    gray = values if scale is None else scale(values.clip(0, 65535))
    rgb = _gray_to_rgb(gray)
    if not isinstance(key, int):
        return rgb
    alpha = np.where(values == key, 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def _read_metadata(info):
    """The valid ``METADATA_KEYS`` entries of a Pillow ``info`` dict, normalized."""
    metadata = {}
    for key in METADATA_KEYS:
        if key in info:
            try:
                metadata[key] = _check_metadata_value(key, info[key])
            except ValueError:  # a damaged chunk (a gamma of 0, say) is not carried on
                pass
    return metadata


def _check_metadata(metadata):
    """``metadata`` as a normalized dict ({} for None), or a ValueError naming the entry."""
    if metadata is None:
        return {}
    if not hasattr(metadata, "items"):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    unknown = set(metadata) - set(METADATA_KEYS)
    if unknown:
        raise ValueError(f"unknown metadata key(s) {sorted(map(str, unknown))}; the keys are "
                         f"{', '.join(METADATA_KEYS)}")
    return {key: _check_metadata_value(key, value) for key, value in metadata.items()
            if value is not None}


def _check_metadata_value(key, value):
    """One metadata entry as float, int or a tuple of floats; ValueError if invalid."""
    # The PNG chunks store gamma and chromaticities x 100000 and resolutions in pixels per
    # metre, as unsigned 31-bit integers.
    if key == "srgb":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
                and 0 <= value <= 3:
            return int(value)
        raise ValueError(f"metadata 'srgb' must be a rendering intent from 0 to 3, got "
                         f"{value!r}")
    count, unit, low = {"gamma": (1, 1e-5, 1), "chromaticity": (8, 1e-5, 0),
                        "dpi": (2, 0.0254, 1)}[key]
    real = (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
            and math.isfinite(v) and low <= round(v / unit) < 2 ** 31)
    if count == 1:
        valid = real(value)
    else:
        valid = isinstance(value, (tuple, list)) and len(value) == count \
            and all(map(real, value))
    if not valid:
        shape = "a number" if count == 1 else f"{count} numbers"
        raise ValueError(f"metadata {key!r} must be {shape} from {low * unit:g} to "
                         f"{(2 ** 31 - 1) * unit:g}, got {value!r}")
    return float(value) if count == 1 else tuple(map(float, value))


def _convert_8bit(img, name):
    """Pillow's own conversion to RGB or RGBA; it handles palettes and tRNS transparency."""
    if img.mode == "La":  # premultiplied: Pillow converts it to LA only
        img = img.convert("LA")
    has_alpha = (img.mode in ALPHA_MODES or "transparency" in img.info
                 or img.mode == "P" and img.palette is not None and img.palette.mode == "RGBA")
    mode = "RGBA" if has_alpha else "RGB"
    try:  # (convert copies an image already in the mode)
        return np.asarray(img if img.mode == mode else img.convert(mode))
    except (ValueError, OSError) as exc:
        raise ValueError(f"{name}: cannot convert mode {img.mode} to RGB ({exc})") from None


def _cmyk_to_rgb(img, icc_profile):
    """CMYK to sRGB through the embedded profile when there is one, else Pillow's formula."""
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without LittleCMS
        icc_profile = None
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return np.asarray(ImageCms.profileToProfile(
                img, source, ImageCms.createProfile("sRGB"), outputMode="RGB"))
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # an unusable profile: the naive conversion below still gives a picture
    return np.asarray(img.convert("RGB"))


def _float_pixels(img, name):
    """Mode F as uint8: values within [0, 1] are fractions, anything else is 0..255.

    Pillow itself reads F as 0..255 (``convert('L')`` clips), but float TIFF files usually
    hold fractions; an all-[0, 1] image read as 0..255 would be black, so it is scaled.
    """
    values = np.asarray(img, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: the float image contains NaN or infinity")
    if values.min() >= 0 and values.max() <= 1:
        values = values * 255
    return np.rint(values.clip(0, 255)).astype(np.uint8)


def _array_pixels(array):
    """A NumPy image as C-contiguous uint8 with 3 or 4 channels."""
    if array.ndim == 3 and array.shape[2] in (3, 4):
        pixels = array
    elif array.ndim == 2:
        pixels = array[:, :, None]
    else:
        raise ValueError(f"image array must have shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {array.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"zero-size image (array shape {array.shape})")
    if pixels.dtype == np.uint8:
        pass
    elif pixels.dtype == np.uint16:
        pixels = _scale_16bit(pixels)
    elif pixels.dtype.kind == "f":
        pixels = _scale_float(pixels)
    else:
        raise ValueError(f"image array must be uint8, uint16 or float in [0, 1], got "
                         f"{array.dtype} (convert it, e.g. with .astype(np.uint8))")
    if pixels.shape[2] == 1:
        return _gray_to_rgb(pixels[:, :, 0])
    return _drop_opaque_alpha(pixels)


def _scale_16bit(values):
    """0..65535 to 0..255, rounded to nearest (x / 257 is never exactly halfway)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _scale_float(values):
    """Fractions in [0, 1] to 0..255, rounded to nearest."""
    if not np.isfinite(values).all():
        raise ValueError("float image array contains NaN or infinity")
    low, high = values.min(), values.max()
    if low < 0 or high > 1:
        raise ValueError(f"float image array must lie in [0, 1], got values in "
                         f"[{low:g}, {high:g}]")
    return np.rint(values * 255).astype(np.uint8)


def _gray_to_rgb(gray):
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _drop_opaque_alpha(pixels):
    """RGB when every alpha is 255, so opaque images never pay for a fourth channel."""
    if pixels.shape[2] == 4 and (pixels[:, :, 3] == 255).all():
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _is_rgb_profile(icc_profile):
    """Whether an ICC profile describes RGB data (header bytes 16-19 name the space)."""
    return icc_profile is not None and icc_profile[16:20] == b"RGB "


def to_pil(palette, indices):
    """A mode 'P' Pillow image from a palette and an index image.

    Parameters
    ----------
    palette : array-like of shape (K, 3) or (K, 4), uint8
        RGB or RGBA colours, 1 <= K <= 256. With an alpha column the palette is stored as
        RGBA, so PNG output carries it as transparency and ``convert('RGBA')`` keeps it.
    indices : array-like of shape (H, W), integers in [0, K)

    Returns
    -------
    PIL.Image.Image
        Mode 'P', size (W, H).

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm.image._io import to_pil
    >>> img = to_pil(np.array([[0, 0, 0], [255, 255, 255]], np.uint8), np.eye(2, dtype=np.uint8))
    >>> img.mode, img.size, img.convert('RGB').getpixel((0, 0))
    ('P', (2, 2), (255, 255, 255))
    """
    palette, indices = _check_quantized(palette, indices)
    if len(palette) > 256:
        raise ValueError(f"a palette image holds at most 256 colours, got {len(palette)}")
    height, width = indices.shape
    img = Image.frombytes("P", (width, height), indices.astype(np.uint8).tobytes())
    img.putpalette(palette.tobytes(), rawmode="RGBA" if palette.shape[1] == 4 else "RGB")
    return img


def _check_quantized(palette, indices):
    """Palette and indices as arrays, checked against each other."""
    palette = np.asarray(palette)
    indices = np.asarray(indices)
    if palette.ndim != 2 or palette.shape[1] not in (3, 4) or len(palette) == 0:
        raise ValueError(f"palette must have shape (K, 3) or (K, 4) with K >= 1, "
                         f"got {palette.shape}")
    if palette.dtype != np.uint8:
        raise ValueError(f"palette must be uint8, got {palette.dtype}")
    if indices.ndim != 2 or indices.size == 0 or indices.dtype.kind not in "ui":
        raise ValueError(f"indices must be a non-empty 2-D integer array, got shape "
                         f"{indices.shape} and dtype {indices.dtype}")
    if indices.min() < 0 or indices.max() >= len(palette):
        raise ValueError(f"indices must lie in [0, {len(palette)}) for a palette of "
                         f"{len(palette)} colours")
    return np.ascontiguousarray(palette), indices


def save_quantized(path, palette, indices, *, icc_profile=None, overwrite=False,
                   compress_level=None, metadata=None):
    """Write a quantized image, in the format named by the file extension.

    ``.png`` is an indexed PNG at the smallest bit depth that holds the palette (1, 2, 4
    or 8 bits); for 16 colours or fewer the 8-bit encoding is tried too and the smaller
    file kept, since zlib often packs whole-byte indices better (such an 8-bit file's
    palette repeats the last colour up to 17 entries; the pixels are the same).
    ``.gif`` is a GIF (one transparent entry at most: the least opaque, when its alpha
    is below 128). ``.jpg``, ``.jpeg``, ``.webp`` (lossless), ``.tif``, ``.tiff`` and
    ``.bmp`` hold the quantized image as truecolour RGB(A); JPEG and BMP keep no alpha,
    so they are composited over white.

    ``metadata`` (as :func:`load_image` reads it) is written where the format stores it:
    PNG gets gAMA, sRGB, cHRM and pHYs chunks (but no sRGB beside an ICC profile, which
    supersedes it); JPEG, TIFF and BMP get the resolution; GIF and WebP none of it.

    The file is written under a temporary name in the target folder and renamed at the
    end: an error or KeyboardInterrupt never leaves a partial file.

    Parameters
    ----------
    path : str or os.PathLike
    palette : ndarray of shape (K, 3) or (K, 4), uint8
        K <= 256 for PNG and GIF.
    indices : ndarray of shape (H, W), integers in [0, K)
    icc_profile : bytes, optional
        Embedded where the format allows it (PNG, JPEG, WebP, TIFF).
    overwrite : bool, default False
        Replace an existing file; otherwise an existing file raises FileExistsError.
    compress_level : int in [0, 9], optional
        PNG zlib level (other formats ignore it). By default Pillow's ``optimize`` (the
        highest level) is used.
    metadata : dict, optional
        Any of ``'gamma'`` (a number), ``'srgb'`` (a rendering intent, 0 to 3),
        ``'chromaticity'`` (8 numbers: white point, red, green and blue x, y) and
        ``'dpi'`` (2 numbers), as in :attr:`LoadedImage.metadata`; a None value is left
        out.

    Returns
    -------
    int
        The number of bytes written.

    Raises
    ------
    ValueError
        If the extension is unknown, the palette/indices, ``compress_level`` or
        ``metadata`` are invalid, or the image is larger than the format allows (GIF
        65535, JPEG 65500, WebP 16383 pixels a side).
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    OSError
        If the folder is missing or not writable (PermissionError, FileNotFoundError,
        NotADirectoryError), naming the path.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from fastkm.image._io import save_quantized
    >>> palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     indices = np.eye(8, dtype=np.uint8)
    ...     size = save_quantized(os.path.join(folder, "a.png"), palette, indices)
    >>> size > 0
    True
    """
    path = Path(path)
    output_format(path)
    _check_target(path, overwrite)
    data = _encode_quantized(path, palette, indices, icc_profile, compress_level,
                             metadata=metadata)
    _write_atomic(path, data)
    return len(data)


def _encode_quantized(path, palette, indices, icc_profile=None, compress_level=None, *,
                      metadata=None):
    """The bytes :func:`save_quantized` writes to ``path``."""
    format_name = output_format(path)
    palette, indices = _check_quantized(palette, indices)
    compress_level = _check_compress_level(compress_level)
    metadata = _check_metadata(metadata)
    if format_name in ("PNG", "GIF") and len(palette) > 256:
        raise ValueError(f"{path}: {format_name} holds at most 256 colours, got "
                         f"{len(palette)}; use a truecolour format (.webp, .tif, ...)")
    _check_side(path, format_name, indices.shape[1], indices.shape[0])
    if format_name in NO_ICC:
        icc_profile = None
    if format_name == "PNG":
        return _encode_png(to_pil(palette, indices), len(palette), icc_profile, compress_level,
                           metadata)
    if format_name == "GIF":
        return _encode_gif(palette, indices)
    dpi = metadata.get("dpi") if format_name in DPI_FORMATS else None
    return _encode_truecolour(palette, indices, format_name, icc_profile, dpi)


def _check_compress_level(compress_level):
    """None, or the zlib level as an int in [0, 9] (Pillow's own errors look like I/O ones)."""
    if compress_level is None:
        return None
    if not isinstance(compress_level, numbers.Integral) or isinstance(compress_level, bool) \
            or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be an integer from 0 to 9, got "
                         f"{compress_level!r}")
    return int(compress_level)


def save_image(path, img, *, overwrite=False):
    """Write a Pillow RGB image (a compare picture, say) as safely as :func:`save_quantized`.

    Parameters
    ----------
    path : str or os.PathLike
        Its extension picks the format, as for :func:`save_quantized`.
    img : PIL.Image.Image
        Mode 'RGB' (or any mode the chosen format can store).
    overwrite : bool, default False

    Returns
    -------
    int
        The number of bytes written.
    """
    path = Path(path)
    output_format(path)
    _check_target(path, overwrite)
    data = _encode_image(path, img)
    _write_atomic(path, data)
    return len(data)


def _encode_image(path, img):
    """The bytes :func:`save_image` writes to ``path``."""
    format_name = output_format(path)
    _check_side(path, format_name, *img.size)
    return _encode(img, format_name, **TRUECOLOUR_OPTIONS.get(format_name, {}))


def output_format(path):
    """Pillow's format name for an output file, from its extension (any letter case).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        'PNG', 'GIF', 'JPEG', 'WEBP', 'TIFF' or 'BMP'.

    Raises
    ------
    ValueError
        If the extension is none of ``FORMATS``.
    """
    path = Path(path)
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: unknown output extension {path.suffix!r}; use one of "
                         f"{', '.join(FORMATS)}") from None


def _check_target(path, overwrite):
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "file exists (pass overwrite=True to replace it)",
                              str(path))


def _check_side(path, format_name, width, height):
    limit = MAX_SIDE.get(format_name)
    if limit is not None and max(width, height) > limit:
        raise ValueError(f"{path}: {width} x {height} pixels is too large for "
                         f"{format_name} (at most {limit} pixels a side); use .png or .tif")


def _encode(img, format_name, **options):
    buffer = io.BytesIO()
    img.save(buffer, format_name, **{k: v for k, v in options.items() if v is not None})
    return buffer.getvalue()


def _encode_png(img, n_colors, icc_profile, compress_level, metadata=None):
    """The smaller of the tight-bit-depth and the 8-bit encodings (one for K > 16)."""
    options = {"icc_profile": icc_profile, "compress_level": compress_level,
               "optimize": compress_level is None, **_png_metadata_options(metadata or {})}
    if n_colors > 16:
        return _encode(img, "PNG", **options)
    # An RGBA palette's depth is named: Pillow before 12.2 counted its entries as its bytes
    # over 3, and wrote 13 to 16 colours with 8-bit indices. (Named for an RGB palette,
    # those versions wrote 2**bits PLTE entries, unused ones too.)
    depth = ({"bits": 1 if n_colors <= 2 else 2 if n_colors <= 4 else 4}
             if img.palette.mode == "RGBA" else {})
    tight = _encode(img, "PNG", **depth, **options)
    # Pillow derives the bit depth from the palette length (16 entries or fewer: 1, 2 or
    # 4 bits), so an 8-bit file needs 17 entries: the last one repeated, a few bytes of
    # PLTE (and tRNS) that no index points to.
    padded = img.copy()
    mode, entries = padded.palette.mode, padded.getpalette(padded.palette.mode)
    padded.putpalette(entries + entries[-len(mode):] * (17 - n_colors), rawmode=mode)
    eight_bit = _encode(padded, "PNG", **options)
    return min(tight, eight_bit, key=len)


def _png_metadata_options(metadata):
    """Pillow's PNG save options for checked metadata: ``pnginfo`` with the gAMA, sRGB and
    cHRM chunks (Pillow omits sRGB when it writes an ICC profile) and ``dpi`` (pHYs)."""
    chunks = []
    if "gamma" in metadata:
        chunks.append((b"gAMA", struct.pack(">I", round(metadata["gamma"] / 1e-5))))
    if "srgb" in metadata:
        chunks.append((b"sRGB", bytes([metadata["srgb"]])))
    if "chromaticity" in metadata:
        chunks.append((b"cHRM", struct.pack(">8I", *(round(v / 1e-5)
                                                      for v in metadata["chromaticity"]))))
    pnginfo = None
    if chunks:
        pnginfo = PngImagePlugin.PngInfo()
        for tag, data in chunks:
            pnginfo.add(tag, data)
    return {"pnginfo": pnginfo, "dpi": metadata.get("dpi")}


def _encode_gif(palette, indices):
    """GIF keeps one fully transparent entry at most: the least opaque one, if below 128."""
    img = to_pil(palette[:, :3], indices)
    transparency = None
    if palette.shape[1] == 4 and palette[:, 3].min() < 128:
        transparency = int(palette[:, 3].argmin())
    return _encode(img, "GIF", transparency=transparency)


def _encode_truecolour(palette, indices, format_name, icc_profile, dpi=None):
    """palette[indices] as RGB(A); works for any K, including K > 256."""
    pixels = palette[indices]
    if pixels.shape[2] == 4 and format_name in NO_ALPHA:
        pixels = _over_white(pixels)
    img = Image.fromarray(np.ascontiguousarray(pixels))
    return _encode(img, format_name, icc_profile=icc_profile, dpi=dpi,
                   **TRUECOLOUR_OPTIONS[format_name])


def _over_white(rgba):
    alpha = rgba[:, :, 3:].astype(np.float32) / 255
    return np.rint(rgba[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)


def _write_atomic(path, data):
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic within one folder, so readers see the old file or the whole new
    one. The temporary file is removed on any failure, KeyboardInterrupt included.
    """
    temporary = _write_temporary(path, data)
    done = False
    try:
        os.replace(temporary, path)
        done = True
    except OSError as exc:  # name the target, not the temporary file
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        if not done:
            temporary.unlink(missing_ok=True)


def _write_temporary(path, data):
    """Write ``data`` whole to a new temporary file beside ``path``; returns its Path.

    Errors name ``path`` (or its folder), and leave no temporary file, KeyboardInterrupt
    included. The file is created with the usual 0o666 & ~umask permissions (mkstemp's
    0o600 would stick once renamed); its name is short, since ``path``'s own may already
    be near the 255-byte limit.
    """
    folder = path.parent
    temporary = folder / f".fastkm-{uuid.uuid4().hex[:16]}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write to this folder ({exc.strerror})",
                        str(folder)) from None
    done = False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        done = True
    except OSError as exc:  # name the target, not the temporary file (or none: disk full)
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        if not done:
            temporary.unlink(missing_ok=True)
    return temporary
