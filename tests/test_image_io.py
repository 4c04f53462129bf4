"""fastkm.image._io: loading every image mode, and safe, small quantized output."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from fastkm.image import _io
from fastkm.image._compare import compare_picture
from fastkm.image._io import (
    LoadedImage,
    load_image,
    output_format,
    save_image,
    save_quantized,
    to_pil,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_bytes(array, bit_depth):
    """A PNG written by hand, for what Pillow cannot write (16-bit RGB and RGBA)."""
    height, width, channels = array.shape
    color_type = {3: 2, 4: 6}[channels]
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def grey_png_with_key(rows, bit_depth, key):
    """A grayscale PNG of ``bit_depth`` bits (1, 2, 4 or 16) with a tRNS grey key, written
    by hand: Pillow cannot write one (nor, before Pillow 10.3, a 16-bit one)."""
    raw = b""
    for row in rows:
        bits = "".join(format(value, f"0{bit_depth}b") for value in row)
        bits += "0" * (-len(bits) % 8)
        raw += b"\0" + int(bits, 2).to_bytes(len(bits) // 8, "big")

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", len(rows[0]), len(rows), bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tRNS", struct.pack(">H", key))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_bit_depth(path):
    """The bit depth byte of a PNG's IHDR chunk."""
    return path.read_bytes()[24]


def bird_quantized(data_dir, n_colors):
    """A palette and indices for the bird, from Pillow's quantizer (test data only)."""
    img = Image.open(data_dir / "bird_small.png").convert("RGB").quantize(n_colors)
    palette = np.array(img.getpalette()[:3 * n_colors], np.uint8).reshape(-1, 3)
    return palette, np.asarray(img)


# --- arrays -----------------------------------------------------------------------------


def test_uint8_rgb_array_is_returned_contiguous():
    loaded = load_image(RGB[:, ::-1])
    assert isinstance(loaded, LoadedImage)
    assert loaded.pixels.flags.c_contiguous and loaded.pixels.dtype == np.uint8
    np.testing.assert_array_equal(loaded.pixels, RGB[:, ::-1])
    assert loaded.icc_profile is None and loaded.path is None


def test_opaque_alpha_is_dropped_and_partial_alpha_kept():
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    assert load_image(rgba).pixels.shape == (5, 7, 3)
    rgba[2, 3, 3] = 254
    np.testing.assert_array_equal(load_image(rgba).pixels, rgba)


def test_grayscale_array_becomes_rgb():
    gray = RGB[:, :, 0]
    np.testing.assert_array_equal(load_image(gray).pixels, np.dstack([gray] * 3))


def test_uint16_array_scaled_by_257_to_nearest():
    values = np.array([[0, 257 * 10, 65535, 128, 129, 257 * 100 + 129]], np.uint16)
    assert load_image(values).pixels[0, :, 0].tolist() == [0, 10, 255, 0, 1, 101]


def test_float_array_in_unit_range():
    values = np.array([[0.0, 0.5, 1.0, 0.2]], np.float32)
    assert load_image(values).pixels[0, :, 0].tolist() == [0, 128, 255, 51]


@pytest.mark.parametrize("values", [[[-0.1, 0.5]], [[0.5, 1.5]], [[np.nan, 0.5]]])
def test_float_array_outside_unit_range_is_refused(values):
    with pytest.raises(ValueError, match=r"\[0, 1\]|NaN"):
        load_image(np.array(values))


@pytest.mark.parametrize("shape", [(4,), (4, 4, 2), (4, 4, 3, 1), (4, 4, 5)])
def test_wrong_array_shape_is_refused(shape):
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.int8, np.uint32])
def test_wrong_array_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        load_image(np.zeros((4, 4, 3), dtype))


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (0, 0)])
def test_zero_size_array_is_refused(shape):
    with pytest.raises(ValueError, match="zero-size"):
        load_image(np.zeros(shape, np.uint8))


def test_other_types_are_refused():
    with pytest.raises(TypeError, match="path, a PIL.Image or a NumPy array"):
        load_image([[0, 1]])


# --- files in every mode ----------------------------------------------------------------


def gray_cases():
    gray = RGB[:, :, 0]
    return gray, np.dstack([gray] * 3)


def save(img, path, **options):
    img.save(path, **options)
    return path


def test_rgb_png(tmp_path):
    loaded = load_image(save(Image.fromarray(RGB), tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.pixels, RGB)
    assert loaded.path == tmp_path / "a.png"


def test_rgba_png_partial_alpha(tmp_path):
    rgba = np.dstack([RGB, RNG.integers(0, 256, RGB.shape[:2], dtype=np.uint8)])
    loaded = load_image(save(Image.fromarray(rgba), tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.pixels, rgba)


def test_rgba_png_fully_opaque_loads_as_rgb(tmp_path):
    img = Image.fromarray(RGB).convert("RGBA")
    assert load_image(save(img, tmp_path / "a.png")).pixels.shape == (5, 7, 3)


@pytest.mark.parametrize("name", ["a.png", "a.tif"])
def test_gray_l(tmp_path, name):
    gray, expected = gray_cases()
    loaded = load_image(save(Image.fromarray(gray), tmp_path / name))
    np.testing.assert_array_equal(loaded.pixels, expected)


def test_gray_la(tmp_path):
    gray, expected = gray_cases()
    alpha = np.full_like(gray, 128)
    img = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)])
    loaded = load_image(save(img, tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.pixels, np.dstack([expected, alpha]))


def test_bilevel(tmp_path):
    bits = RGB[:, :, 0] > 127
    img = Image.fromarray(bits.astype(np.uint8) * 255).convert("1")
    loaded = load_image(save(img, tmp_path / "a.png"))
    np.testing.assert_array_equal(loaded.pixels[:, :, 1], bits * 255)


@pytest.mark.parametrize("name", ["a.png", "a.gif"])
def test_palette_without_transparency(tmp_path, name):
    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], np.uint8)
    indices = RGB[:, :, 0] % 3
    loaded = load_image(save(to_pil(palette, indices), tmp_path / name))
    np.testing.assert_array_equal(loaded.pixels, palette[indices])


@pytest.mark.parametrize("name", ["a.png", "a.gif"])
def test_palette_with_transparent_index(tmp_path, name):
    palette = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30]], np.uint8)
    indices = RGB[:, :, 0] % 3
    img = to_pil(palette, indices)
    loaded = load_image(save(img, tmp_path / name, transparency=1))
    assert loaded.pixels.shape == (5, 7, 4)
    np.testing.assert_array_equal(loaded.pixels[:, :, 3], np.where(indices == 1, 0, 255))
    opaque = indices != 1
    np.testing.assert_array_equal(loaded.pixels[opaque, :3], palette[indices[opaque]])


def test_rarer_modes():
    lab = Image.new("LAB", (2, 1), (255, 128, 128))  # white: its "A" band is no alpha
    assert load_image(lab).pixels.tolist() == [[[254, 255, 254]] * 2]
    premultiplied = Image.new("La", (1, 1), (100, 128))
    assert load_image(premultiplied).pixels.tolist() == [[[199, 199, 199, 128]]]
    rgba_palette = to_pil(np.array([[9, 8, 7, 100]], np.uint8), np.zeros((1, 1), np.uint8))
    assert load_image(rgba_palette).pixels.tolist() == [[[9, 8, 7, 100]]]


def test_cmyk_without_profile(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [0, 255, 0, 0]]],
                    np.uint8)
    loaded = load_image(save(Image.fromarray(cmyk, "CMYK"), tmp_path / "a.tif"))
    assert loaded.pixels.tolist() == [[[255, 255, 255], [0, 255, 255], [0, 0, 0],
                                       [255, 0, 255]]]


def test_cmyk_with_unusable_profile_falls_back():
    img = Image.new("CMYK", (2, 1), (255, 0, 0, 0))
    img.info["icc_profile"] = b"\0" * 200
    loaded = load_image(img)
    assert loaded.pixels.tolist() == [[[0, 255, 255]] * 2] and loaded.icc_profile is None


def test_16bit_gray_png(tmp_path):
    values = np.array([[0, 257 * 10, 65535, 40000]], np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    loaded = load_image(save(img, tmp_path / "a.png"))
    assert loaded.pixels[0, :, 0].tolist() == [0, 10, 255, 156]


def test_int32_mode_i_is_read_as_16_bit_and_clipped(tmp_path):
    values = np.array([[-5, 257 * 10, 65535, 100000]], np.int32)
    loaded = load_image(save(Image.fromarray(values), tmp_path / "a.tif"))
    assert loaded.pixels[0, :, 0].tolist() == [0, 10, 255, 255]


@pytest.mark.parametrize("values, expected", [
    ([[0.0, 0.5, 1.0]], [0, 128, 255]),          # fractions, as in float TIFF files
    ([[0.0, 100.4, 300.0]], [0, 100, 255]),      # Pillow's own 0..255 convention, clipped
])
def test_float_mode_f(tmp_path, values, expected):
    img = Image.fromarray(np.array(values, np.float32))
    assert img.mode == "F"
    loaded = load_image(save(img, tmp_path / "a.tif"))
    assert loaded.pixels[0, :, 0].tolist() == expected


@pytest.mark.parametrize("source", ["png", "mode I"])
def test_16bit_gray_transparency_key_becomes_alpha(tmp_path, source):
    values = np.array([[0, 40000, 1234, 65535], [1234, 0, 1234, 257]], np.uint16)
    if source == "png":  # a tRNS chunk with a 16-bit grey key
        image = tmp_path / "a.png"
        image.write_bytes(grey_png_with_key(values.tolist(), 16, 1234))
        with Image.open(image) as img:  # (mode I before Pillow 10.3)
            assert img.mode in ("I;16", "I") and img.info["transparency"] == 1234
    else:  # how Pillow 10.0 to 10.2 open the same file
        image = Image.fromarray(values.astype(np.int32))
        image.info["transparency"] = 1234
    pixels = load_image(image).pixels
    assert pixels.shape == (2, 4, 4)
    np.testing.assert_array_equal(pixels[:, :, 3], np.where(values == 1234, 0, 255))
    assert pixels[0, :, 0].tolist() == [0, 156, 5, 255]


@pytest.mark.parametrize("bit_depth", [2, 4])
@pytest.mark.parametrize("source", ["path", "opened PIL image"])
def test_2_and_4_bit_gray_transparency_key_becomes_alpha(tmp_path, bit_depth, source):
    # Pillow scales the samples to 0..255 (x85 or x17) but not the key.
    top = 2 ** bit_depth - 1
    key = top - 1
    values = np.array([[key, top, 0, 1], [0, key, key, 1]])
    path = tmp_path / "a.png"
    path.write_bytes(grey_png_with_key(values.tolist(), bit_depth, key))
    with Image.open(path) as img:
        assert img.mode == "L" and img.info["transparency"] == key
        pixels = load_image(path if source == "path" else img).pixels
    assert pixels.shape == (2, 4, 4)
    np.testing.assert_array_equal(pixels[:, :, 3], np.where(values == key, 0, 255))
    np.testing.assert_array_equal(pixels[:, :, 0], values * (255 // top))


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_rgb_png(tmp_path, channels):
    values = RNG.integers(0, 65536, (3, 4, channels), dtype=np.uint16)
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(values, 16))
    # Pillow keeps the high byte of each 16-bit sample.
    np.testing.assert_array_equal(load_image(path).pixels, values >> 8)


@pytest.mark.parametrize("orientation, expected", [
    (2, lambda a: a[:, ::-1]),
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),
    (8, lambda a: np.rot90(a, 1)),
])
def test_exif_orientation_is_applied(tmp_path, orientation, expected):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(RGB), tmp_path / "a.png", exif=exif)
    np.testing.assert_array_equal(load_image(path).pixels, expected(RGB))


def test_pil_image_input_keeps_its_filename(data_dir):
    with Image.open(data_dir / "bird_small.png") as img:
        loaded = load_image(img)
    assert loaded.pixels.shape == (128, 128, 3)
    assert loaded.path == data_dir / "bird_small.png"
    assert load_image(Image.fromarray(RGB)).path is None


def test_rgb_icc_profile_is_returned(tmp_path):
    path = save(Image.fromarray(RGB), tmp_path / "a.png", icc_profile=SRGB_ICC)
    assert load_image(path).icc_profile == SRGB_ICC


CHROMATICITY = (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)  # sRGB's


def png_with_metadata(path, gamma, srgb=None, **options):
    """RGB written with gAMA, cHRM and optionally sRGB chunks (and Pillow's ``options``)."""
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", round(gamma * 100000)))
    info.add(b"cHRM", struct.pack(">8I", *(round(v * 100000) for v in CHROMATICITY)))
    if srgb is not None:
        info.add(b"sRGB", bytes([srgb]))
    return save(Image.fromarray(RGB), path, pnginfo=info, **options)


def test_png_metadata_is_returned(tmp_path):
    path = png_with_metadata(tmp_path / "a.png", 0.45455, srgb=1, dpi=(300, 150))
    metadata = load_image(path).metadata
    assert metadata.keys() == {"gamma", "chromaticity", "srgb", "dpi"}
    assert metadata["gamma"] == 0.45455 and metadata["srgb"] == 1
    assert metadata["chromaticity"] == pytest.approx(CHROMATICITY)
    assert metadata["dpi"] == pytest.approx((300, 150), abs=0.02)
    assert load_image(save(Image.fromarray(RGB), tmp_path / "b.png")).metadata == {}
    assert load_image(RGB).metadata == {}
    assert LoadedImage(RGB, None, None).metadata is None  # three fields still build one


def test_damaged_metadata_is_not_carried():
    img = Image.fromarray(RGB)
    img.info.update(gamma=0.0, srgb=7, dpi=(0, 0), chromaticity=(0.3,), aspect=(1, 2))
    assert load_image(img).metadata == {}
    img.info.update(gamma=2.2, dpi=(72, 72))
    assert load_image(img).metadata == {"gamma": 2.2, "dpi": (72.0, 72.0)}


def test_exif_rotation_turns_the_resolution(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(Image.fromarray(RGB), tmp_path / "a.png", exif=exif, dpi=(100, 200))
    loaded = load_image(path)
    assert loaded.pixels.shape == (7, 5, 3)
    assert loaded.metadata["dpi"] == pytest.approx((200, 100), abs=0.02)


def test_non_rgb_icc_profile_is_dropped():
    img = Image.fromarray(RGB[:, :, 0])
    img.info["icc_profile"] = SRGB_ICC[:16] + b"GRAY" + SRGB_ICC[20:]
    assert load_image(img).icc_profile is None


# --- bad files --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"hello, not a picture", "not an image"),
    (png_bytes(np.zeros((0, 3, 3), np.uint16), 16), "not an image"),  # zero height
])
def test_not_an_image(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_image(path)
    assert "bad.png" in str(info.value)


def test_zero_size_pil_image():
    with pytest.raises(ValueError, match="zero-size"):
        load_image(Image.new("RGB", (0, 4)))


def test_truncated_file(tmp_path, data_dir):
    content = (data_dir / "bird_small.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(content[:len(content) // 2])
    with pytest.raises(ValueError, match="cut.png.*truncated or corrupt"):
        load_image(path)


def test_corrupt_file(tmp_path, data_dir):
    content = bytearray((data_dir / "bird_small.png").read_bytes())
    middle = len(content) // 2
    content[middle:middle + 64] = bytes(64)
    path = tmp_path / "broken.png"
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="broken.png.*truncated or corrupt"):
        load_image(path)


@pytest.mark.parametrize("limit", [10_000, 1_000])  # Pillow warns above 1x, fails above 2x
def test_decompression_bomb_refused_before_decoding(monkeypatch, data_dir, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    with pytest.raises(ValueError, match="bird_small.png.*decompression bomb"):
        load_image(data_dir / "bird_small.png")


def test_decompression_bomb_limit_holds_for_pil_images_read_from_files(monkeypatch, data_dir):
    with Image.open(data_dir / "bird_small.png") as img:  # opened lazily, not decoded
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
        with pytest.raises(ValueError, match="bird_small.png.*decompression bomb"):
            load_image(img)
    # An image built in memory is decoded already: accepted like the same array.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    np.testing.assert_array_equal(load_image(Image.fromarray(RGB)).pixels, RGB)
    assert load_image(Image.new("RGB", (7, 5), (1, 2, 3))).pixels.shape == (5, 7, 3)


# --- to_pil ----------------------------------------------------------------------------


def test_to_pil_rgb():
    palette = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    indices = RGB[:, :, 0] % 2
    img = to_pil(palette, indices)
    assert img.mode == "P" and img.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(img), indices)
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), palette[indices])


def test_to_pil_rgba_alpha_survives_png(tmp_path):
    palette = np.array([[1, 2, 3, 0], [4, 5, 6, 128], [7, 8, 9, 255]], np.uint8)
    indices = RGB[:, :, 0] % 3
    img = to_pil(palette, indices)
    np.testing.assert_array_equal(np.asarray(img.convert("RGBA")), palette[indices])
    img.save(tmp_path / "a.png")
    reread = np.asarray(Image.open(tmp_path / "a.png").convert("RGBA"))
    np.testing.assert_array_equal(reread, palette[indices])


@pytest.mark.parametrize("palette, indices, message", [
    (np.zeros((257, 3), np.uint8), np.zeros((2, 2), np.uint8), "at most 256"),
    (np.zeros((4, 3), np.uint8), np.full((2, 2), 4, np.uint8), r"\[0, 4\)"),
    (np.zeros((4, 2), np.uint8), np.zeros((2, 2), np.uint8), "palette must have shape"),
    (np.zeros((4, 3), np.float32), np.zeros((2, 2), np.uint8), "palette must be uint8"),
    (np.zeros((4, 3), np.uint8), np.zeros(4, np.uint8), "indices must be"),
])
def test_to_pil_refuses_bad_input(palette, indices, message):
    with pytest.raises(ValueError, match=message):
        to_pil(palette, indices)


# --- save_quantized --------------------------------------------------------------------


def eight_bit_png_size(palette, indices):
    """Size of the same image forced to 8 bits per index (a 17-entry palette)."""
    padded = np.vstack([palette, np.repeat(palette[-1:], 17 - len(palette), 0)])
    buffer = io.BytesIO()
    to_pil(padded, indices).save(buffer, "PNG", optimize=True)
    return len(buffer.getvalue())


@pytest.mark.parametrize("n_colors, tight_bits", [(2, 1), (3, 2), (4, 2), (5, 4), (16, 4),
                                                  (17, 8), (200, 8)])
def test_png_bit_depth_and_round_trip(tmp_path, data_dir, n_colors, tight_bits):
    palette, indices = bird_quantized(data_dir, n_colors)
    path = tmp_path / "out.png"
    size = save_quantized(path, palette, indices)
    assert size == path.stat().st_size
    assert png_bit_depth(path) in {tight_bits, 8}
    if n_colors <= 16:
        tight = io.BytesIO()
        to_pil(palette, indices).save(tight, "PNG", optimize=True)
        assert size <= min(len(tight.getvalue()), eight_bit_png_size(palette, indices))
    with Image.open(path) as img:
        assert img.mode == "P"
    np.testing.assert_array_equal(load_image(path).pixels, palette[indices])


def runs_of(n_colors):
    """An index image of long runs with a regular break, which 8-bit indices pack better
    than 4 bits for 16 colours (by 20 to 30%; with fewer colours that depends on zlib)."""
    rng = np.random.default_rng(1)
    runs = np.repeat(rng.integers(0, n_colors, (64, 1), dtype=np.uint8), 256, axis=1)
    runs[:, ::7] = rng.integers(0, n_colors, runs[:, ::7].shape)
    return runs


def shifted_rows(n_colors):
    """Random indices, each row the one above moved right by one pixel. At 8 bits a row
    repeats the one above at a whole-byte offset, which zlib finds; at 1, 2 or 4 bits the
    offset is part of a byte. 8 bits pack it better with classic zlib (Pillow's wheels
    before 11.1) and zlib-ng alike: by 60% for 2 colours, 25% for 8, 35% for 15."""
    row = np.random.default_rng(1).integers(0, n_colors, 1024, dtype=np.uint8)
    return np.stack([np.roll(row, i) for i in range(8)])


def sixteen_colour_images():
    """Index images where 8-bit (whole bytes, long runs) or 4-bit (random noise) wins."""
    noise = np.random.default_rng(1).integers(0, 16, (64, 256), dtype=np.uint8)
    return [(runs_of(16), 8), (noise, 4)]


@pytest.mark.parametrize("indices, bits", sixteen_colour_images())
def test_png_keeps_the_smaller_of_4_and_8_bits(tmp_path, indices, bits):
    palette = np.arange(48, dtype=np.uint8).reshape(16, 3) * 5
    path = tmp_path / "out.png"
    save_quantized(path, palette, indices)
    assert png_bit_depth(path) == bits
    np.testing.assert_array_equal(load_image(path).pixels, palette[indices])


@pytest.mark.parametrize("n_colors, tight_bits", [(1, 1), (2, 1), (3, 2), (5, 4), (16, 4)])
@pytest.mark.parametrize("channels", [3, 4])
def test_png_8_bit_candidate_has_8_bit_indices(monkeypatch, n_colors, tight_bits, channels):
    depths = []
    encode = _io._encode

    def recording(img, format_name, **options):
        data = encode(img, format_name, **options)
        depths.append(data[24])  # IHDR bit depth
        return data

    monkeypatch.setattr(_io, "_encode", recording)
    palette = np.arange(n_colors * channels, dtype=np.uint8).reshape(n_colors, channels)
    _io._encode_quantized("a.png", palette, np.arange(n_colors, dtype=np.uint8)[None])
    assert depths == [tight_bits, 8]


@pytest.mark.parametrize("n_colors", [2, 8, 15])
@pytest.mark.parametrize("channels", [3, 4])
def test_png_below_16_colours_keeps_8_bits_when_smaller(tmp_path, n_colors, channels):
    palette = np.arange(n_colors * channels, dtype=np.uint8).reshape(n_colors, channels) * 5
    indices = shifted_rows(n_colors)
    path = tmp_path / "out.png"
    size = save_quantized(path, palette, indices)
    assert png_bit_depth(path) == 8
    if channels == 3:
        assert size == eight_bit_png_size(palette, indices)
    np.testing.assert_array_equal(load_image(path).pixels, palette[indices])


def test_png_compress_level(tmp_path, data_dir):
    palette, indices = bird_quantized(data_dir, 64)
    fast = save_quantized(tmp_path / "fast.png", palette, indices, compress_level=0)
    small = save_quantized(tmp_path / "small.png", palette, indices)
    assert fast > small
    np.testing.assert_array_equal(load_image(tmp_path / "fast.png").pixels, palette[indices])


@pytest.mark.parametrize("level", [10, -5, 3.5, True, "6"])
def test_bad_compress_level_is_refused(tmp_path, level):
    palette, indices = np.zeros((2, 3), np.uint8), np.eye(4, dtype=np.uint8)
    with pytest.raises(ValueError, match="compress_level must be an integer from 0 to 9"):
        save_quantized(tmp_path / "a.png", palette, indices, compress_level=level)
    assert list(tmp_path.iterdir()) == []
    save_quantized(tmp_path / "a.png", palette, indices, compress_level=np.int64(9))


def test_png_rgba_palette(tmp_path):
    palette = np.array([[1, 2, 3, 0], [4, 5, 6, 128], [7, 8, 9, 255]], np.uint8)
    indices = RGB[:, :, 0] % 3
    save_quantized(tmp_path / "a.png", palette, indices)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png").pixels, palette[indices])


def test_gif(tmp_path, data_dir):
    palette, indices = bird_quantized(data_dir, 32)
    save_quantized(tmp_path / "a.gif", palette, indices)
    with Image.open(tmp_path / "a.gif") as img:
        assert img.format == "GIF"
    np.testing.assert_array_equal(load_image(tmp_path / "a.gif").pixels, palette[indices])


def test_gif_keeps_the_transparent_entry(tmp_path):
    palette = np.array([[1, 2, 3, 255], [4, 5, 6, 0], [7, 8, 9, 255]], np.uint8)
    indices = RGB[:, :, 0] % 3
    save_quantized(tmp_path / "a.gif", palette, indices)
    pixels = load_image(tmp_path / "a.gif").pixels
    np.testing.assert_array_equal(pixels[:, :, 3], palette[indices, 3])
    opaque = indices != 1
    np.testing.assert_array_equal(pixels[opaque, :3], palette[indices[opaque], :3])


@pytest.mark.parametrize("name, alpha", [
    ("a.webp", False), ("a.webp", True), ("a.tif", False), ("a.tiff", True), ("A.TIF", True),
    ("a.bmp", False),
])
def test_lossless_truecolour(tmp_path, data_dir, name, alpha):
    palette, indices = bird_quantized(data_dir, 16)
    if alpha:
        palette = np.hstack([palette, np.arange(0, 256, 16, dtype=np.uint8)[:, None]])
    save_quantized(tmp_path / name, palette, indices)
    with Image.open(tmp_path / name) as img:
        assert img.mode == ("RGBA" if alpha else "RGB")
    np.testing.assert_array_equal(load_image(tmp_path / name).pixels, palette[indices])


def test_truecolour_allows_more_than_256_colours(tmp_path):
    palette = RNG.integers(0, 256, (300, 3), dtype=np.uint8)
    indices = np.arange(300, dtype=np.uint16).reshape(15, 20)
    save_quantized(tmp_path / "a.webp", palette, indices)
    np.testing.assert_array_equal(load_image(tmp_path / "a.webp").pixels, palette[indices])
    with pytest.raises(ValueError, match="at most 256"):
        save_quantized(tmp_path / "a.png", palette, indices)
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("name", ["a.jpg", "a.jpeg"])
def test_jpeg(tmp_path, data_dir, name):
    palette, indices = bird_quantized(data_dir, 16)
    save_quantized(tmp_path / name, palette, indices)
    error = np.abs(load_image(tmp_path / name).pixels.astype(int) - palette[indices])
    assert error.mean() < 3


@pytest.mark.parametrize("name", ["a.jpg", "a.bmp"])
def test_formats_without_alpha_composite_over_white(tmp_path, name):
    palette = np.array([[0, 0, 0, 0], [0, 0, 0, 255]], np.uint8)
    indices = np.repeat(np.array([[0, 1]], np.uint8), 16, axis=0).repeat(16, axis=1)
    save_quantized(tmp_path / name, palette, indices)
    pixels = load_image(tmp_path / name).pixels
    assert pixels.shape[2] == 3
    assert pixels[:, :8].min() > 240 and pixels[:, -8:].max() < 15


@pytest.mark.parametrize("name, kept", [("a.png", True), ("a.jpg", True), ("a.webp", True),
                                        ("a.tif", True), ("a.gif", False), ("a.bmp", False)])
def test_icc_profile_kept_where_supported(tmp_path, data_dir, name, kept):
    palette, indices = bird_quantized(data_dir, 8)
    save_quantized(tmp_path / name, palette, indices, icc_profile=SRGB_ICC)
    with Image.open(tmp_path / name) as img:
        assert img.info.get("icc_profile") == (SRGB_ICC if kept else None)


METADATA = {"gamma": 0.45455, "srgb": 0, "chromaticity": CHROMATICITY, "dpi": (300, 150)}


@pytest.mark.parametrize("name, kept", [
    ("a.png", {"gamma", "srgb", "chromaticity", "dpi"}), ("a.jpg", {"dpi"}),
    ("a.tif", {"dpi"}), ("a.bmp", {"dpi"}), ("a.gif", set()), ("a.webp", set()),
])
@pytest.mark.parametrize("n_colors", [4, 32])  # PNG: 2 or 8 bits (and the 8-bit candidate)
def test_metadata_kept_where_supported(tmp_path, data_dir, name, kept, n_colors):
    palette, indices = bird_quantized(data_dir, n_colors)
    save_quantized(tmp_path / name, palette, indices, metadata=METADATA)
    metadata = load_image(tmp_path / name).metadata
    assert metadata.keys() == kept
    for key in kept:
        expected = METADATA[key]
        assert metadata[key] == (expected if key == "srgb" else pytest.approx(expected, abs=0.02))


def test_png_metadata_beside_an_icc_profile(tmp_path, data_dir):
    # An ICC profile supersedes sRGB (the PNG specification forbids both); gAMA and cHRM
    # stay, for readers without colour management.
    palette, indices = bird_quantized(data_dir, 8)
    save_quantized(tmp_path / "a.png", palette, indices, icc_profile=SRGB_ICC,
                   metadata=METADATA)
    with Image.open(tmp_path / "a.png") as img:
        assert img.info["icc_profile"] == SRGB_ICC and "srgb" not in img.info
        assert img.info["gamma"] == 0.45455 and img.info["dpi"] == pytest.approx((300, 150),
                                                                               abs=0.02)


def test_png_metadata_round_trips_exactly(tmp_path, data_dir):
    source = png_with_metadata(tmp_path / "source.png", 1.0, dpi=(299.9994, 72.009))
    palette, indices = bird_quantized(data_dir, 8)
    save_quantized(tmp_path / "a.png", palette, indices, metadata=load_image(source).metadata)
    with Image.open(source) as before, Image.open(tmp_path / "a.png") as after:
        assert {key: after.info[key] for key in ("gamma", "chromaticity", "dpi")} == \
            {key: before.info[key] for key in ("gamma", "chromaticity", "dpi")}


@pytest.mark.parametrize("metadata, message", [
    ({"gamma": 0}, "'gamma' must be a number"),
    ({"gamma": "2.2"}, "'gamma' must be a number"),
    ({"gamma": float("nan")}, "'gamma' must be a number"),
    ({"srgb": 4}, "'srgb' must be a rendering intent"),
    ({"srgb": True}, "'srgb' must be a rendering intent"),
    ({"dpi": 300}, "'dpi' must be 2 numbers"),
    ({"dpi": (300, -1)}, "'dpi' must be 2 numbers"),
    ({"chromaticity": (0.3,) * 7}, "'chromaticity' must be 8 numbers"),
    ({"aspect": (1, 1)}, "unknown metadata key"),
    ([("gamma", 1.0)], "metadata must be a dict"),
])
def test_bad_metadata_is_refused(tmp_path, metadata, message):
    with pytest.raises(ValueError, match=message):
        save_quantized(tmp_path / "a.png", np.zeros((1, 3), np.uint8),
                       np.zeros((2, 2), np.uint8), metadata=metadata)
    assert list(tmp_path.iterdir()) == []
    save_quantized(tmp_path / "a.png", np.zeros((1, 3), np.uint8),
                   np.zeros((2, 2), np.uint8), metadata={"gamma": None, "dpi": (72, 72)})


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="unknown output extension '.xyz'"):
        save_quantized(tmp_path / "a.xyz", np.zeros((1, 3), np.uint8), np.zeros((2, 2), int))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_not_overwritten(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"keep me")
    palette, indices = np.zeros((2, 3), np.uint8), np.eye(4, dtype=np.uint8)
    with pytest.raises(FileExistsError, match="a.png"):
        save_quantized(path, palette, indices)
    assert path.read_bytes() == b"keep me"
    save_quantized(path, palette, indices, overwrite=True)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt])
def test_failure_mid_write_leaves_no_partial_file(tmp_path, monkeypatch, exception):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")

    def fail(source, target):
        assert os.path.getsize(source) > 0  # the data was written, not yet renamed
        raise exception

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(type(exception) if isinstance(exception, OSError) else exception):
        save_quantized(path, np.zeros((2, 3), np.uint8), np.eye(4, dtype=np.uint8),
                       overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert path.read_bytes() == b"old"


def test_written_file_has_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save_quantized(tmp_path / "a.png", np.zeros((2, 3), np.uint8), np.eye(4, dtype=np.uint8))
    finally:
        os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("folder, error", [("missing", FileNotFoundError),
                                           ("a_file", NotADirectoryError)])
def test_unwritable_folder(tmp_path, folder, error):
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(error, match="cannot write to this folder") as info:
        save_quantized(tmp_path / folder / "a.png", np.zeros((2, 3), np.uint8),
                       np.eye(4, dtype=np.uint8))
    assert info.value.filename == str(tmp_path / folder)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs POSIX permissions and a non-root user")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write to this folder"):
            save_quantized(folder / "a.png", np.zeros((2, 3), np.uint8),
                           np.eye(4, dtype=np.uint8))
    finally:
        folder.chmod(0o700)


# --- compare_picture -------------------------------------------------------------------


def find(picture, image):
    """The (x, y) offsets where ``image`` appears, pixel for pixel, in ``picture``."""
    picture = np.asarray(picture)
    height, width = image.shape[:2]
    return [(x, y) for y, x in zip(*np.nonzero((picture[:, :, :3] == image[0, 0, :3]).all(2)))
            if y + height <= picture.shape[0] and x + width <= picture.shape[1]
            and (picture[y:y + height, x:x + width] == image).all()]


@pytest.mark.parametrize("height, width", [(40, 60), (60, 40), (50, 50)])
def test_compare_picture_layout(height, width):
    original = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    quantized = palette[RNG.integers(0, 16, (height, width))]
    picture = compare_picture(original, quantized, palette)
    assert picture.mode == "RGB"
    [(x0, y0)], [(x1, y1)] = find(picture, original), find(picture, quantized)
    assert y0 == y1 and x1 >= x0 + width  # side by side
    if width >= height:  # swatches below: about two images (or captions) wide
        assert 2 * width < picture.width < 2 * width + 100 and picture.height > height + 8
    else:  # swatches at the right: about one image tall
        assert picture.width > 2 * width + 4 and height < picture.height < height + 60
    swatch_colours = {tuple(c) for c in np.asarray(picture).reshape(-1, 3)}
    assert {tuple(c) for c in palette} <= swatch_colours


@pytest.mark.parametrize("height, width", [(16, 16), (1, 1), (1, 7)])
def test_compare_picture_captions_fit_small_images(height, width):
    original = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    palette = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    picture = np.asarray(compare_picture(original, palette[original[..., 0] % 4], palette))
    [(_, top)] = find(picture, original)
    # The captions above the images end before the picture's margin: none is cut off.
    captions = picture[:top]
    inked = np.nonzero((captions != 255).any(axis=(0, 2)))[0]
    assert inked.size and inked.max() < picture.shape[1] - 4


def test_compare_picture_shows_transparency_as_checkerboard():
    original = np.zeros((40, 60, 4), np.uint8)
    palette = np.array([[0, 0, 0, 0]], np.uint8)
    picture = np.asarray(compare_picture(original, original, palette))
    # Fully transparent black: the panels show only the two checkerboard shades.
    assert {tuple(c) for c in picture[30:40, 10:50].reshape(-1, 3)} == {(255,) * 3, (204,) * 3}


def test_compare_picture_refuses_different_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        compare_picture(RGB, RGB[1:], np.zeros((2, 3), np.uint8))


# --- save_image and output_format ------------------------------------------------------


@pytest.mark.parametrize("name", ["a.png", "a.webp", "a.bmp", "a.tif"])
def test_save_image_round_trip(tmp_path, name):
    size = save_image(tmp_path / name, Image.fromarray(RGB))
    assert size == (tmp_path / name).stat().st_size
    np.testing.assert_array_equal(load_image(tmp_path / name).pixels, RGB)


def test_save_image_is_as_safe_as_save_quantized(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        save_image(tmp_path / "a.png", Image.fromarray(RGB))
    with pytest.raises(ValueError, match="unknown output extension"):
        save_image(tmp_path / "a.txt", Image.fromarray(RGB))
    monkeypatch.setattr(_io.os, "replace", lambda source, target: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_image(tmp_path / "a.png", Image.fromarray(RGB), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert (tmp_path / "a.png").read_bytes() == b"old"


@pytest.mark.parametrize("name, expected", [("a.PNG", "PNG"), ("b.c.jpeg", "JPEG"),
                                            ("x.TIFF", "TIFF")])
def test_output_format(name, expected):
    assert output_format(name) == expected


@pytest.mark.parametrize("name", ["a", "a.svg", "a.png.bak"])
def test_output_format_unknown(name):
    with pytest.raises(ValueError, match="unknown output extension"):
        output_format(name)
