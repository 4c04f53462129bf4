"""A side-by-side picture of an original, its quantized version and the palette.

Both images are shown at full resolution (no resampling that would hide banding or
dithering), with captions, and the palette as a grid of swatches sorted from dark to light:
below the images for landscape pictures, at their right for portrait ones, so the whole
picture stays roughly as wide as it is tall. Transparent pixels show a checkerboard.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
SWATCH_EDGE = (160, 160, 160)
CHECKER = (204, 204, 204)  # the light squares are the background colour


def compare_picture(original_pixels, quantized_pixels, palette):
    """One RGB picture with the original, the quantized image and the palette swatches.

    Parameters
    ----------
    original_pixels : ndarray of shape (H, W, 3) or (H, W, 4), uint8
    quantized_pixels : ndarray of shape (H, W, 3) or (H, W, 4), uint8
        The same size as the original.
    palette : ndarray of shape (K, 3) or (K, 4), uint8

    Returns
    -------
    PIL.Image.Image
        Mode 'RGB'. The two images side by side under captions ("original", and the
        number of colours with the PSNR); the swatches below them when W >= H, at their
        right otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from fastkm.image._compare import compare_picture
    >>> image = np.zeros((40, 60, 3), np.uint8)
    >>> palette = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    >>> compare_picture(image, image, palette).mode
    'RGB'
    """
    original = np.asarray(original_pixels)
    quantized = np.asarray(quantized_pixels)
    palette = np.asarray(palette)
    if original.shape[:2] != quantized.shape[:2]:
        raise ValueError(f"the original ({original.shape}) and the quantized image "
                         f"({quantized.shape}) differ in size")
    height, width = original.shape[:2]
    pad = max(4, min(height, width) // 64)
    font = ImageFont.load_default(size=max(12, min(48, min(height, width) // 24)))
    captions = ["original", _fit_caption((f"{len(palette)} colours",
                                          f"PSNR {_psnr_text(original, quantized)}"),
                                         font, width)]
    caption_width, caption_height = _text_size(captions, font)
    top = 2 * pad + caption_height
    landscape = width >= height
    # Each image's column is as wide as its caption at least: small images cut it off.
    column = max(width, caption_width)
    panels_width = 2 * column + 3 * pad
    swatches = (_swatch_grid(palette, panels_width - 2 * pad, height // 6, landscape)
                if landscape else _swatch_grid(palette, height, width // 6, landscape))
    if landscape:
        size = (panels_width, top + height + swatches.height + 2 * pad)
        swatch_at = (pad, top + height + pad)
    else:
        size = (panels_width + swatches.width + pad, top + height + pad)
        swatch_at = (panels_width, top)
    picture = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(picture)
    for i, (pixels, text) in enumerate(zip((original, quantized), captions)):
        left = pad + i * (column + pad)
        picture.paste(Image.fromarray(_flatten(pixels)), (left, top))
        draw.multiline_text((left, pad), text, fill=TEXT, font=font)
    picture.paste(swatches, swatch_at)
    return picture


def _text_size(captions, font):
    """Pixel width of the widest and height of the tallest (possibly multi-line) caption."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.multiline_textbbox((0, 0), text, font=font) for text in captions]
    return max(box[2] for box in boxes), max(box[3] for box in boxes)


def _fit_caption(parts, font, width):
    """The parts on one line when that fits in ``width`` pixels, else one part a line."""
    line = ", ".join(parts)
    return line if font.getlength(line) <= width else "\n".join(parts)


def _psnr_text(original, quantized):
    """PSNR over the shared channels; fully transparent pixels count as exact (as quantize)."""
    channels = min(original.shape[2], quantized.shape[2])
    diff = original[..., :channels].astype(np.float64) - quantized[..., :channels]
    if original.shape[2] == 4:
        diff[original[..., 3] == 0] = 0
    mse = float(np.mean(diff ** 2))
    return "exact" if mse == 0 else f"{10 * math.log10(255 ** 2 / mse):.2f} dB"


def _flatten(pixels):
    """RGB pixels; RGBA ones composited over a checkerboard, so transparency shows."""
    if pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    rows, cols = np.indices(pixels.shape[:2])
    square = max(4, min(pixels.shape[:2]) // 32)
    dark = ((rows // square + cols // square) % 2 == 1)[..., None]
    backdrop = np.where(dark, CHECKER, BACKGROUND).astype(np.float32)
    alpha = pixels[..., 3:].astype(np.float32) / 255
    return np.rint(pixels[..., :3] * alpha + backdrop * (1 - alpha)).astype(np.uint8)


def _swatch_grid(palette, length, thickness, horizontal):
    """The palette as a grid of swatches, dark to light, along ``length`` pixels.

    A horizontal grid fills ``length`` in width with up to 16 to 32 swatches a row (more
    rows for larger palettes), each swatch at most ``thickness`` tall; a vertical one is
    the same grid transposed.
    """
    order = np.argsort(palette[:, :3].astype(np.float64) @ [0.299, 0.587, 0.114],
                       kind="stable")
    n_colors = len(palette)
    per_line = min(n_colors, max(16, math.ceil(math.sqrt(4 * n_colors))))
    lines = math.ceil(n_colors / per_line)
    along = max(1, length // per_line)
    across = max(4, min(along, thickness))
    boxes = []
    cells = np.empty((lines * across, per_line * along, palette.shape[1]), np.uint8)
    cells[...] = (*BACKGROUND, 255)[:palette.shape[1]]
    for rank, entry in enumerate(order):
        line, slot = divmod(rank, per_line)
        box = slice(line * across, (line + 1) * across), slice(slot * along, (slot + 1) * along)
        cells[box] = palette[entry]
        boxes.append(box)
    grid = _flatten(cells)
    for rows, cols in boxes:  # thin edges tell close colours apart
        grid[rows.start, cols] = grid[rows.stop - 1, cols] = SWATCH_EDGE
        grid[rows, cols.start] = grid[rows, cols.stop - 1] = SWATCH_EDGE
    if not horizontal:
        grid = grid.transpose(1, 0, 2)
    return Image.fromarray(np.ascontiguousarray(grid))
