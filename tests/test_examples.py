"""The scripts in examples/ run, print what they did and write their pictures."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args):
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def picture(path):
    """(format, size, number of colours) of an image file."""
    with Image.open(path) as img:
        return img.format, img.size, len(img.convert("RGB").getcolors(1 << 24))


def test_seed_walkthrough(tmp_path, data_dir):
    expected = json.loads((data_dir / "ex7_expected.json").read_text())
    lines = run_example("seed_walkthrough.py", tmp_path / "out", data_dir)
    assert "closest centroids of the first 3 points: [0, 2, 1] (0-based; the exercise's " \
           "1-based 1, 3, 2)" in lines
    step1 = ", ".join(f"[{x}, {y}]" for x, y in
                      expected["ex7m_printed_expectation"]["centroids_step1"])
    assert f"iteration 1: centroids {step1}" in lines
    assert "stopped after 7 iterations (at most 10): the last one changed no label" in lines
    assert "cluster sizes [98, 102, 100], inertia (SSE) 266.6585" in lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "seed-iterations.png", "seed-panels.png"]
    fmt, size, colors = picture(tmp_path / "out" / "seed-iterations.png")
    assert fmt == "PNG" and size == (600, 500) and colors > 1
    fmt, size, colors = picture(tmp_path / "out" / "seed-panels.png")
    assert fmt == "PNG" and size == (1280, 640) and colors > 1  # 7 panels, 4 a row


def test_compress_bird(tmp_path, data_dir):
    # A 32 x 24 crop keeps the run short.
    with Image.open(data_dir / "bird_small.png") as img:
        img.crop((40, 40, 72, 64)).save(tmp_path / "crop.png")
    lines = run_example("compress_bird.py", tmp_path / "out", tmp_path / "crop.png", "-k", 8)
    assert lines[0].startswith(f"{tmp_path / 'crop.png'}: 32 x 24 pixels, ")
    assert "-> 8 colours, PSNR " in lines[0]
    psnr = float(lines[0].split("PSNR ")[1].split()[0])
    assert 20 < psnr < 60
    with Image.open(tmp_path / "out" / "crop-k8.png") as result:
        assert result.size == (32, 24) and len(result.getcolors()) <= 8
    fmt, size, colors = picture(tmp_path / "out" / "crop-compare.png")
    assert fmt == "PNG" and size[0] > 2 * 32 and colors > 8


def test_cluster_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(20, 2)) + [8 * i, 0] for i in range(3)])
    data = tmp_path / "points.csv"
    data.write_text("a,b\n" + "\n".join(f"{x},{y}" for x, y in X) + "\n")
    out = tmp_path / "out"
    lines = run_example("cluster_csv.py", out, data)
    assert lines[0] == (f"$ fastkm cluster {data} -k 3 -o {out / 'clusters.csv'} --plot "
                        f"{out / 'clusters.png'} --force")
    assert "cluster sizes: 0: 20, 1: 20, 2: 20" in lines
    assert sorted(p.name for p in out.iterdir()) == [
        "clusters-centers.csv", "clusters.csv", "clusters.png"]
    assert len((out / "clusters.csv").read_text().splitlines()) == 61
    assert (out / "clusters-centers.csv").read_text().startswith("a,b\n")
    fmt, size, colors = picture(out / "clusters.png")
    assert fmt == "PNG" and size == (600, 500) and colors > 1
