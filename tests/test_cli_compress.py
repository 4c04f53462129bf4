"""``fastkm compress``: outputs, reports, refusals and one-line errors that write nothing."""

import errno
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import fastkm.image
from fastkm.cli import main
from fastkm.image import _io


@pytest.fixture
def bird(tmp_path, data_dir):
    """A copy of the 128 x 128 seed photo in tmp_path."""
    path = tmp_path / "bird.png"
    shutil.copy(data_dir / "bird_small.png", path)
    return path


def run(capsys, *args):
    """main() in this process: (exit status, stdout lines, stderr lines)."""
    try:
        status = main(["compress", *map(str, args)])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def assert_one_error(status, out, err, *mentions, expected_status=None):
    assert status != 0 if expected_status is None else status == expected_status
    assert out == [] and len(err) == 1, err
    assert err[0].startswith("fastkm: error: ")
    for text in mentions:
        assert text in err[0]


def zero_width_png():
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


# --- outputs and reports -----------------------------------------------------------------


def test_default_output_beside_the_input(capsys, bird):
    status, out, err = run(capsys, bird, "-k", "8")
    assert status == 0 and err == []
    output = bird.parent / "bird-k8.png"
    assert names(bird.parent) == ["bird-k8.png", "bird.png"]
    with Image.open(output) as img:
        assert img.mode == "P" and img.size == (128, 128)
        assert len(img.getcolors()) <= 8
    [line] = out
    before, after = bird.stat().st_size, output.stat().st_size
    assert f"{before:,} -> {after:,} bytes" in line
    assert f"({before / after:.3g}:1)" in line
    assert "PSNR" in line and " dB" in line and line.endswith(" s")


def test_report_psnr_matches_the_written_file(capsys, bird):
    status, out, _ = run(capsys, bird, "-k", "8")
    original = _io.load_image(bird).pixels.astype(float)
    written = _io.load_image(bird.parent / "bird-k8.png").pixels
    psnr = 10 * np.log10(255 ** 2 / np.mean((original - written) ** 2))
    assert f"PSNR {psnr:.2f} dB" in out[0]


@pytest.mark.parametrize("name, format_name", [("small.gif", "GIF"), ("small.webp", "WEBP"),
                                               ("small.png", "PNG")])
def test_output_file_format_follows_its_extension(capsys, bird, name, format_name):
    status, _, _ = run(capsys, bird, "-k", "4", "-o", bird.parent / name)
    assert status == 0
    with Image.open(bird.parent / name) as img:
        assert img.format == format_name


def test_output_folder_for_one_input(capsys, bird, tmp_path):
    (tmp_path / "out").mkdir()
    assert run(capsys, bird, "-k", "4", "-o", tmp_path / "out")[0] == 0
    assert names(tmp_path / "out") == ["bird-k4.png"]


@pytest.mark.parametrize("name", ["new", "new/", "new.d/"])
def test_output_folder_for_one_input_is_created(capsys, bird, tmp_path, name):
    # A name without an extension, or ending in a separator, is a folder, as for several
    # inputs (a name with an extension, such as new.d without the slash, names a file).
    status, out, err = run(capsys, bird, "-k", "4", "-o", f"{tmp_path}/{name}")
    folder = tmp_path / name.rstrip("/")
    assert status == 0 and err == [], err
    assert names(folder) == ["bird-k4.png"]
    assert out[0].startswith(f"{bird} -> {folder / 'bird-k4.png'}: ")


def test_output_folder_that_cannot_be_created(capsys, bird, tmp_path):
    assert_one_error(*run(capsys, bird, "-o", tmp_path / "missing" / "new"),
                     "cannot create the output folder", expected_status=2)
    assert names(tmp_path) == ["bird.png"]


def test_options_reach_quantize(capsys, bird, monkeypatch):
    calls = []
    real = fastkm.image.quantize

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastkm.image, "quantize", spy)
    run(capsys, bird, "-k", "4", "--colorspace", "oklab", "--dither", "-o", bird.parent / "a.png")
    run(capsys, bird, "-k", "4", "--dither", "0.5", "-o", bird.parent / "b.png")
    run(capsys, bird, "-k", "4", "-o", bird.parent / "c.png")
    assert [(c["colorspace"], c["dither"]) for c in calls] == [
        ("oklab", True), ("rgb", 0.5), ("rgb", False)]


def test_existing_output_needs_force(capsys, bird):
    output = bird.parent / "bird-k4.png"
    output.write_bytes(b"keep")
    assert_one_error(*run(capsys, bird, "-k", "4"), "bird-k4.png", "--force")
    assert output.read_bytes() == b"keep"
    assert run(capsys, bird, "-k", "4", "--force")[0] == 0
    assert output.read_bytes().startswith(b"\x89PNG")


def test_input_is_never_overwritten(capsys, bird):
    content = bird.read_bytes()
    assert_one_error(*run(capsys, bird, "-o", bird, "--force"), "never overwrites its input")
    assert bird.read_bytes() == content


def test_force_never_overwrites_another_input(capsys, bird, tmp_path):
    # a.png's output is named a-k16.png, the second input here: --force must not let the
    # first job replace the second's input.
    shutil.copy(bird, tmp_path / "a.png")
    other = tmp_path / "a-k16.png"
    other.write_bytes(bird.read_bytes()[:-1] + b"\x00")  # a different file, still a PNG
    content = other.read_bytes()
    status, out, err = run(capsys, tmp_path / "a.png", other, "--quiet", "--force")
    assert_one_error(status, out, err, "a-k16.png: is another input of this run")
    assert other.read_bytes() == content
    assert names(tmp_path) == ["a-k16-k16.png", "a-k16.png", "a.png", "bird.png"]


def test_compare_picture(capsys, bird, tmp_path):
    status, _, _ = run(capsys, bird, "-k", "4", "--compare", tmp_path / "cmp.png")
    assert status == 0
    assert names(tmp_path) == ["bird-k4.png", "bird.png", "cmp.png"]
    with Image.open(tmp_path / "cmp.png") as picture:
        # Two 128 x 128 panels side by side, captions above and swatches below.
        assert 2 * 128 < picture.width < 2 * 128 + 40
        assert 128 + 20 < picture.height < 2 * 128
        pixels = np.asarray(picture.convert("RGB"))
    quantized = _io.load_image(tmp_path / "bird-k4.png").pixels
    assert {tuple(c) for c in np.unique(quantized.reshape(-1, 3), axis=0)} <= \
        {tuple(c) for c in pixels.reshape(-1, 3)}


def test_output_link_to_the_input(capsys, bird):
    link = bird.parent / "link.png"
    link.symlink_to(bird)
    status, out, err = run(capsys, bird, "-o", link, "--force")
    assert_one_error(status, out, err)
    assert err == [f"fastkm: error: {link}: is the input; fastkm never overwrites its input"]


def test_compare_and_output_the_same_file(capsys, bird, tmp_path):
    status, out, err = run(capsys, bird, "-o", tmp_path / "x.png", "--compare",
                           tmp_path / "x.png")
    assert_one_error(status, out, err, "x.png: --compare names the output file too")
    assert names(tmp_path) == ["bird.png"]


def test_long_output_name(capsys, bird, tmp_path):
    output = tmp_path / ("a" * 246 + ".png")  # 250 bytes, under the 255-byte limit
    status, _, err = run(capsys, bird, "-k", "4", "-o", output)
    assert status == 0 and err == [] and output.exists()


def test_existing_compare_file_needs_force(capsys, bird, tmp_path):
    (tmp_path / "cmp.png").write_bytes(b"keep")
    assert_one_error(*run(capsys, bird, "--compare", tmp_path / "cmp.png"), "cmp.png")
    assert names(tmp_path) == ["bird.png", "cmp.png"]


# --- errors: one line, non-zero status, nothing written ------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"not an image at all", "not an image"),
    (zero_width_png(), "not an image"),
])
def test_bad_input_files(capsys, tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    assert_one_error(*run(capsys, path), "bad.png", message, expected_status=1)
    assert names(tmp_path) == ["bad.png"]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_input(capsys, bird, damage):
    content = bytearray(bird.read_bytes())
    middle = len(content) // 2
    if damage == "truncated":
        content = content[:middle]
    else:
        content[middle:middle + 64] = bytes(64)
    bird.write_bytes(bytes(content))
    assert_one_error(*run(capsys, bird), "bird.png", "truncated or corrupt")
    assert names(bird.parent) == ["bird.png"]


def test_missing_input(capsys, tmp_path):
    assert_one_error(*run(capsys, tmp_path / "nope.png"), "nope.png", "no such file")
    assert names(tmp_path) == []


def test_decompression_bomb(capsys, bird, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert_one_error(*run(capsys, bird), "bird.png", "decompression bomb")
    assert names(bird.parent) == ["bird.png"]


@pytest.mark.parametrize("args, message", [
    (["-k", "0"], "at least 1"),
    (["-k", "257"], "at most 256"),
    (["-k", "300", "-o", "{tmp}/x.gif"], "at most 256"),
    (["-k", "300", "-o", "{tmp}/x.webp"], "at most 256"),  # quantize's limit too
    (["-k", "abc"], "invalid int"),
    (["-o", "{tmp}/x.svg"], "unknown output extension '.svg'"),
    (["--compare", "{tmp}/x.txt"], "unknown output extension '.txt'"),
    (["--dither", "2"], "invalid strength"),
    (["--dither", "photo.jpg"], "invalid strength 'photo.jpg'"),  # as --help says
    (["--colorspace", "hsv"], "invalid choice"),
])
def test_usage_errors(capsys, bird, tmp_path, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert_one_error(*run(capsys, bird, *args), message, expected_status=2)
    assert names(tmp_path) == ["bird.png"]


@pytest.mark.parametrize("name, limit", [("x.gif", "65535"), ("x.jpg", "65500"),
                                         ("x.webp", "16383")])
def test_too_large_for_the_output_format(capsys, tmp_path, name, limit):
    Image.new("RGB", (70000, 4), "red").save(tmp_path / "long.png")
    status, out, err = run(capsys, tmp_path / "long.png", "-k", "2", "-o", tmp_path / name)
    assert_one_error(status, out, err, f"{tmp_path / name}: 70000 x 4 pixels", limit)
    assert names(tmp_path) == ["long.png"]


def test_failed_compare_picture_leaves_no_output(capsys, tmp_path):
    # The picture is two images wide: too wide for WebP, when the image itself is not.
    Image.new("RGB", (9000, 4), "red").save(tmp_path / "wide.png")
    status, out, err = run(capsys, tmp_path / "wide.png", "-k", "2", "--compare",
                           tmp_path / "c.webp")
    assert_one_error(status, out, err, "c.webp", "16383")
    assert names(tmp_path) == ["wide.png"]


def test_disk_full_names_the_output(capsys, bird, monkeypatch):
    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "replace", full)
    assert_one_error(*run(capsys, bird, "-k", "4"),
                     f"{bird.parent / 'bird-k4.png'}: No space left on device")
    assert names(bird.parent) == ["bird.png"]


@pytest.mark.parametrize("folder", ["missing", "a_file"])
def test_unwritable_output_folder(capsys, bird, tmp_path, folder):
    (tmp_path / "a_file").write_bytes(b"")
    assert_one_error(*run(capsys, bird, "-o", tmp_path / folder / "x.png"), folder)
    assert names(tmp_path) == ["a_file", "bird.png"]


def test_ctrl_c_leaves_no_partial_file(capsys, bird, monkeypatch):
    def interrupt(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(_io.os, "replace", interrupt)
    assert_one_error(*run(capsys, bird), "interrupted", expected_status=130)
    assert names(bird.parent) == ["bird.png"]


# --- folders -------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path, data_dir):
    """Two good photos, a bad one between them, and a text file."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "c.png"):
        shutil.copy(data_dir / "bird_small.png", photos / name)
    (photos / "b.png").write_bytes(b"junk")
    (photos / "notes.txt").write_text("not a photo")
    return photos


def test_folder_run_reports_a_bad_file_and_goes_on(capsys, folder):
    status, out, err = run(capsys, folder, "-k", "4")
    assert status == 1
    assert names(folder) == ["a-k4.png", "a.png", "b.png", "c-k4.png", "c.png", "notes.txt"]
    assert [line.split(" -> ")[0] for line in out] == [str(folder / "a.png"),
                                                       str(folder / "c.png")]
    errors = [line for line in err if line.startswith("fastkm: error:")]
    assert len(errors) == 1 and "b.png" in errors[0]
    assert [line for line in err if line.startswith("[")] == [
        f"[{i}/3] {folder / name}" for i, name in enumerate(["a.png", "b.png", "c.png"], 1)]


def test_folder_run_quiet_prints_errors_only(capsys, folder):
    status, out, err = run(capsys, folder, "-k", "4", "--quiet")
    assert status == 1 and out == [] and len(err) == 1 and "b.png" in err[0]


def test_folder_run_skips_its_own_outputs(capsys, folder):
    run(capsys, folder, "-k", "4")
    status, out, _ = run(capsys, folder, "-k", "4", "--force")
    assert len(out) == 2
    assert not any("-k4-k4" in name for name in names(folder))


def test_several_inputs_into_an_output_folder(capsys, folder, tmp_path, data_dir):
    (folder / "b.png").unlink()
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data_dir / "bird_small.png", other / "a.png")  # same name as photos/a.png
    status, out, err = run(capsys, folder, other / "a.png", "-k", "4", "-o", tmp_path / "out",
                           "--quiet")
    assert names(tmp_path / "out") == ["a-k4.png", "c-k4.png"]
    assert status == 1 and len(err) == 1 and "already written by this run" in err[0]


def test_folder_run_takes_only_image_extensions(capsys, folder):
    (folder / "b.png").unlink()
    for name in ("doc.pdf", "page.eps", "clip.mpg", "data.h5"):
        (folder / name).write_bytes(b"not an image")
    status, out, err = run(capsys, folder, "-k", "4", "--quiet")
    assert status == 0 and err == []
    assert [name for name in names(folder) if "-k4" in name] == ["a-k4.png", "c-k4.png"]


def test_several_inputs_into_an_image_name(capsys, folder, tmp_path):
    assert_one_error(*run(capsys, folder, "-o", tmp_path / "multi.png"),
                     "multi.png: -o names an image file", expected_status=2)
    assert not (tmp_path / "multi.png").exists()


def test_compare_needs_a_single_input(capsys, folder, tmp_path):
    assert_one_error(*run(capsys, folder, "--compare", tmp_path / "c.png"), "single input",
                     expected_status=2)


# --- the sample photo, through the real entry point -----------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes: Linux")
def test_undecodable_file_name_is_reported_and_the_run_goes_on(bird, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in (b"a.png", b"b\xff.png", b"c.png"):  # b"\xff" is not UTF-8
        shutil.copy(bird, os.path.join(os.fsencode(folder), name))
    # A UTF-8 locale's stdout (strict errors), where printing the name raised.
    result = subprocess.run([sys.executable, "-m", "fastkm", "compress", "-k", "4", "in"],
                            cwd=tmp_path, capture_output=True, timeout=120,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(os.fsencode(folder))) == [
        b"a-k4.png", b"a.png", b"b\xff-k4.png", b"b\xff.png", b"c-k4.png", b"c.png"]
    assert b"b\\xff.png -> " in result.stdout and result.stdout.count(b"PSNR") == 3
    # A name the file system decodes, printed in the terminal's own encoding.
    shutil.copy(bird, folder / "caf\u00e9.png")
    result = subprocess.run([sys.executable, "-m", "fastkm", "compress", "-k", "4",
                             "in/caf\u00e9.png"], cwd=tmp_path, capture_output=True,
                            timeout=120, env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert result.returncode == 0 and b"caf\xe9.png -> " in result.stdout, result.stdout


def test_no_input_compresses_the_sample_photo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastkm", "compress"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert names(tmp_path) == ["sample-k16.png"]
    assert "sample-k16.png" in result.stdout and "PSNR" in result.stdout
    with Image.open(tmp_path / "sample-k16.png") as img:
        assert img.mode == "P" and img.size == (768, 512)


def test_png_colour_and_size_metadata_are_kept(capsys, bird):
    # The sample photo has sRGB (intent 0) and pHYs (72 dpi); gAMA and cHRM are added.
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 45455))
    info.add(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000,
                                  6000))
    info.add(b"sRGB", b"\0")
    with Image.open(bird) as img:
        assert img.info["srgb"] == 0 and "dpi" in img.info
        img.save(bird.parent / "tagged.png", pnginfo=info, dpi=img.info["dpi"])
    status, _, _ = run(capsys, bird.parent / "tagged.png", "-k", "8", "-o",
                       bird.parent / "out.png", "--compare", bird.parent / "compare.png")
    assert status == 0
    keys = ("gamma", "chromaticity", "srgb", "dpi")
    with Image.open(bird.parent / "tagged.png") as before, \
            Image.open(bird.parent / "out.png") as after:
        assert {key: after.info.get(key) for key in keys} == \
            {key: before.info[key] for key in keys}
    assert run(capsys, bird, "-k", "8", "-o", bird.parent / "out.tif")[0] == 0
    with Image.open(bird) as before, Image.open(bird.parent / "out.tif") as after:
        assert after.info["dpi"] == pytest.approx(before.info["dpi"], abs=0.02)
