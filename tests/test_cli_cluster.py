"""``fastkm cluster``: reading tables, outputs, the picture, and one-line errors that write
nothing."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fastkm
from fastkm.cli import main

SEED_INIT = "3,3\n6,2\n8,5\n"


def run(capsys, *args):
    """main() in this process: (exit status, stdout lines, stderr lines)."""
    try:
        status = main(["cluster", *map(str, args)])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def seed(tmp_path, data_dir):
    """The exercise's data and initial centres as files in tmp_path, and its numbers."""
    data = tmp_path / "ex7.csv"
    data.write_text((data_dir / "ex7data2.csv").read_text())
    init = tmp_path / "init.csv"
    init.write_text(SEED_INIT)
    return data, init, json.loads((data_dir / "ex7_expected.json").read_text())


@pytest.fixture
def table(tmp_path):
    """A CSV with a header, a text column and three well separated groups in (x, y, z)."""
    rng = np.random.default_rng(0)
    lines = ["name,x,y,z"]
    for group in range(3):
        for i, row in enumerate(rng.normal(size=(20, 3)) + 10 * group):
            lines.append(f"p{group}-{i}," + ",".join(map(str, row)))
    path = tmp_path / "points.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def png_of(path):
    with Image.open(path) as img:
        return img.format, img.size, len(img.convert("RGB").getcolors(1 << 24))


# --- results and outputs -------------------------------------------------------------------


def test_seed_run_writes_labels_and_centres(capsys, seed, tmp_path):
    data, init, expected = seed
    out = tmp_path / "result.csv"
    status, lines, err = run(capsys, data, "--init", init, "--max-iter", 10, "-o", out)
    assert status == 0 and err == []
    assert lines[0] == f"{data}: 300 rows, 2 columns, 3 clusters (init from {init})"
    assert lines[1] == "inertia 266.659 after 7 iterations (converged)"
    assert lines[2] == "cluster sizes: 0: 98, 1: 102, 2: 100"
    assert lines[3:] == [f"wrote {out}", f"wrote {tmp_path / 'result-centers.csv'}"]
    labels = out.read_text().splitlines()
    assert labels[0] == "label" and len(labels) == 301
    assert np.bincount([int(v) for v in labels[1:]]).tolist() == [98, 102, 100]
    centers = (tmp_path / "result-centers.csv").read_text().splitlines()
    assert centers[0] == "x0,x1"
    np.testing.assert_allclose([[float(v) for v in line.split(",")] for line in centers[1:]],
                               expected["runkMeans_10iters_centroids"], atol=1e-9)
    assert names(tmp_path) == ["ex7.csv", "init.csv", "result-centers.csv", "result.csv"]


def test_npz_output_and_npy_input(capsys, seed, tmp_path):
    data, init, expected = seed
    npy = tmp_path / "X.npy"
    np.save(npy, np.loadtxt(data, delimiter=","))
    status, lines, _ = run(capsys, npy, "--init", init, "-o", tmp_path / "r.npz")
    assert status == 0
    with np.load(tmp_path / "r.npz") as result:
        assert sorted(result.files) == ["centers", "labels"]
        np.testing.assert_allclose(result["centers"], expected["runkMeans_10iters_centroids"],
                                   atol=1e-9)
        assert result["labels"].shape == (300,)


def test_no_output_prints_only(capsys, seed, tmp_path):
    data, _, _ = seed
    status, lines, _ = run(capsys, data, "-k", 2)
    assert status == 0 and len(lines) == 3 and "2 clusters (init k-means++" in lines[0]
    assert names(tmp_path) == ["ex7.csv", "init.csv"]


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_result_as_the_library(capsys, table, tmp_path, init):
    status, _, _ = run(capsys, table, "--columns", "x,z", "-k", 3, "--seed", 5,
                       "--init", init, "-o", tmp_path / "r.npz")
    assert status == 0
    X = np.loadtxt(table, delimiter=",", skiprows=1, usecols=(1, 3))
    km = fastkm.KMeans(3, init=init, random_state=5).fit(X)
    with np.load(tmp_path / "r.npz") as result:
        np.testing.assert_array_equal(result["labels"], km.labels_)
        np.testing.assert_array_equal(result["centers"], km.cluster_centers_)


def test_header_names_and_indices_select_columns(capsys, table, tmp_path):
    status, lines, _ = run(capsys, table, "--columns", "y, 1", "-o", tmp_path / "a.csv")
    assert status == 0 and "60 rows, 2 columns, 3 clusters" in lines[0]
    assert (tmp_path / "a-centers.csv").read_text().splitlines()[0] == "y,x"
    assert lines[2] == "cluster sizes: 0: 20, 1: 20, 2: 20"


def test_headerless_semicolons_and_indices(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a;1;0\nb;1.5;0.5\nc;9;9\nd;9.5;8.5\n")
    status, _, _ = run(capsys, path, "-k", 2, "--columns", "1,2", "-o", tmp_path / "o.csv")
    assert status == 0
    header, *rows = (tmp_path / "o-centers.csv").read_text().splitlines()
    assert header == "x1,x2" and sorted(rows) == ["1.25,0.25", "9.25,8.75"]


def test_centres_file_round_trips_as_init(capsys, table, tmp_path):
    run(capsys, table, "--columns", "x,y,z", "-o", tmp_path / "a.csv")
    status, lines, _ = run(capsys, table, "--columns", "x,y,z", "--init",
                           tmp_path / "a-centers.csv", "-o", tmp_path / "b.csv")
    assert status == 0 and "3 clusters (init from" in lines[0]
    assert "after 1 iteration (converged)" in lines[1]
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_centres_file_with_numeric_names_round_trips(capsys, tmp_path):
    # Column names that read as numbers: the centres file's header is still a header.
    path = tmp_path / "years.csv"
    path.write_text("id,2019,2020\n" + "".join(
        f"{i},{10 * (i % 3) + i / 100},{10 * (i % 3) - i / 100}\n" for i in range(30)))
    run(capsys, path, "--columns", "2019,2020", "-o", tmp_path / "a.csv")
    assert (tmp_path / "a-centers.csv").read_text().startswith("2019,2020\n")
    status, lines, _ = run(capsys, path, "--columns", "2019,2020", "--init",
                           tmp_path / "a-centers.csv", "-o", tmp_path / "b.csv")
    assert status == 0 and "30 rows, 2 columns, 3 clusters (init from" in lines[0]
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_init_file_with_reordered_columns_is_refused(capsys, table, tmp_path):
    run(capsys, table, "--columns", "z,x", "-o", tmp_path / "a.csv")
    status, out, err = run(capsys, table, "--columns", "x,z", "--init",
                           tmp_path / "a-centers.csv", "-o", tmp_path / "b.csv")
    assert_one_error(status, out, err, "a-centers.csv: init columns z,x do not match the "
                     "data's x,z")
    assert not (tmp_path / "b.csv").exists()


@pytest.mark.parametrize("content", [
    '"Weight, kg";"Height, cm"\n70;180\n80;175\n60;160\n90;190\n',
    "a,b\tc\n70\t180\n80\t175\n60\t160\n90\t190\n",
])
def test_delimiter_is_not_a_comma_inside_quoted_names(capsys, tmp_path, content):
    path = tmp_path / "d.csv"
    path.write_text(content)
    status, lines, _ = run(capsys, path, "-k", 2, "-o", tmp_path / "o.csv")
    assert status == 0 and "4 rows, 2 columns" in lines[0]
    header, *rows = (tmp_path / "o-centers.csv").read_text().splitlines()
    assert header in ('"Weight, kg","Height, cm"', "\"a,b\",c")
    assert sorted(rows) == ["65.0,170.0", "85.0,182.5"]


def test_reaching_max_iter_is_not_called_a_stop(capsys, seed):
    # Converged at its last allowed iteration: the same run as without --max-iter.
    data, init, _ = seed
    _, lines, _ = run(capsys, data, "--init", init)
    assert lines[1] == "inertia 266.659 after 7 iterations (converged)"
    _, lines, _ = run(capsys, data, "--init", init, "--max-iter", 7)
    assert lines[1] == ("inertia 266.659 after 7 iterations (reached --max-iter: may not "
                        "have converged)")


def test_standardize_writes_centres_in_data_units(capsys, tmp_path):
    # Column 0 has two values; column 1 is spread evenly over 0..100. Unscaled, column 1
    # decides the split; standardized, column 0's gap does.
    i = np.arange(20)
    X = np.column_stack([i % 2, i * 100 / 19])
    np.save(tmp_path / "d.npy", X)
    (tmp_path / "init.csv").write_text("0,50\n1,50\n")
    common = [tmp_path / "d.npy", "--init", tmp_path / "init.csv"]
    status, lines, _ = run(capsys, *common, "--standardize", "-o", tmp_path / "s.npz")
    assert status == 0 and lines[0].endswith("(init from " + str(tmp_path / "init.csv")
                                             + ", standardized)")
    mean, std = X.mean(axis=0), X.std(axis=0)
    km = fastkm.KMeans(2, init=(np.array([[0, 50], [1, 50]]) - mean) / std).fit(
        (X - mean) / std)
    with np.load(tmp_path / "s.npz") as result:
        np.testing.assert_allclose(result["centers"], km.cluster_centers_ * std + mean)
        assert result["centers"][:, 0].tolist() == [0.0, 1.0]
    run(capsys, *common, "-o", tmp_path / "u.npz")
    with np.load(tmp_path / "u.npz") as result:
        assert result["centers"][:, 0].tolist() != [0.0, 1.0]


@pytest.mark.filterwarnings("error")
def test_standardize_huge_values(capsys, tmp_path):
    # Their squares overflow: std must not square them, and the result must not change.
    huge, small = tmp_path / "huge.csv", tmp_path / "small.csv"
    huge.write_text("x,y\n1e200,1\n2e200,1\n3e200,2\n-1e200,3\n")
    small.write_text("x,y\n1,1\n2,1\n3,2\n-1,3\n")
    for path in (huge, small):
        status, _, err = run(capsys, path, "-k", 2, "--standardize", "-o",
                             path.with_suffix(".npz"))
        assert status == 0 and err == []
    with np.load(tmp_path / "huge.npz") as a, np.load(tmp_path / "small.npz") as b:
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["centers"], b["centers"] * [1e200, 1], rtol=1e-12)


def test_centres_file_with_quoted_names_round_trips(capsys, tmp_path):
    data = tmp_path / "q.csv"
    data.write_text('"w, kg","h ""in"""\n1,2\n3,4\n5,6\n7,9\n')
    run(capsys, data, "-k", 2, "-o", tmp_path / "a.csv")
    assert (tmp_path / "a-centers.csv").read_text().startswith('"w, kg","h ""in"""\n')
    status, lines, _ = run(capsys, data, "--init", tmp_path / "a-centers.csv")
    assert status == 0 and "2 columns, 2 clusters (init from" in lines[0]
    assert "after 1 iteration (converged)" in lines[1]


def test_long_output_name(capsys, seed, tmp_path):
    data, _, _ = seed
    out = tmp_path / ("a" * 246 + ".npz")  # 250 bytes, under the 255-byte limit
    status, _, err = run(capsys, data, "-o", out)
    assert status == 0 and err == [] and out.exists()


def test_force_replaces_outputs(capsys, seed, tmp_path):
    data, _, _ = seed
    out = tmp_path / "r.csv"
    out.write_text("old\n")
    (tmp_path / "r-centers.csv").write_text("old\n")
    status, _, _ = run(capsys, data, "-o", out, "--force")
    assert status == 0 and out.read_text().startswith("label\n")


# --- the picture ---------------------------------------------------------------------------


def test_plot_is_a_png_of_the_expected_size(capsys, seed, tmp_path):
    data, init, _ = seed
    picture = tmp_path / "it.png"
    status, lines, _ = run(capsys, data, "--init", init, "--plot", picture)
    assert status == 0 and lines[-1] == f"wrote {picture}"
    fmt, size, colors = png_of(picture)
    assert fmt == "PNG" and size == (600, 500) and colors > 1


def test_plot_of_more_columns_and_panels(capsys, table, tmp_path):
    picture = tmp_path / "it.png"
    status, _, _ = run(capsys, table, "--columns", "x,y,z", "--panels", "--plot", picture,
                       "--max-iter", 2)
    assert status == 0
    fmt, size, colors = png_of(picture)
    assert fmt == "PNG" and size == (640, 340) and colors > 1  # 2 panels of 320 x 300


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_plot_does_not_change_the_result(capsys, seed, tmp_path, init):
    data, _, _ = seed
    run(capsys, data, "-k", 4, "--init", init, "-o", tmp_path / "a.csv")
    status, lines, _ = run(capsys, data, "-k", 4, "--init", init, "-o", tmp_path / "b.csv",
                           "--plot", tmp_path / "b.png")
    assert status == 0
    for name in ("{}.csv", "{}-centers.csv"):
        assert (tmp_path / name.format("a")).read_text() == \
            (tmp_path / name.format("b")).read_text()


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_plot_does_not_change_the_result_on_repeated_rows(capsys, tmp_path, init):
    # Enough rows, few distinct, for KMeans to fit the distinct rows weighted by their
    # counts, and to draw a string init from them rather than from all rows.
    from fastkm._duplicates import distinct_rows

    rng = np.random.default_rng(1)
    points = rng.integers(0, 30, (300, 2)).astype(float)
    X = points[rng.integers(0, len(points), 70_000)]
    n_init = 1 if init == "k-means++" else 10
    assert distinct_rows(X, None, 1, 4, n_init * 20) is not None
    np.save(tmp_path / "X.npy", X)
    common = ("-k", 4, "--init", init, "--seed", 3, "--max-iter", 20)
    run(capsys, tmp_path / "X.npy", *common, "-o", tmp_path / "a.npz")
    status, _, _ = run(capsys, tmp_path / "X.npy", *common, "-o", tmp_path / "b.npz",
                       "--plot", tmp_path / "b.png")
    assert status == 0
    km = fastkm.KMeans(4, init=init, random_state=3, max_iter=20).fit(X)
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        for result in (a, b):
            np.testing.assert_array_equal(result["labels"], km.labels_)
            np.testing.assert_array_equal(result["centers"], km.cluster_centers_)


def test_plot_colours_points_by_the_written_labels(capsys, seed, tmp_path, monkeypatch):
    # After one iteration, the last iteration's assignment (to the initial centres) is not
    # the written one (to the final centres).
    import fastkm.plot

    data, init, _ = seed
    drawn = []
    draw = fastkm.plot.iterations
    monkeypatch.setattr(fastkm.plot, "iterations",
                        lambda *a, **kw: drawn.append(kw["labels"]) or draw(*a, **kw))
    status, _, _ = run(capsys, data, "--init", init, "--max-iter", 1, "-o",
                       tmp_path / "o.npz", "--plot", tmp_path / "p.png")
    assert status == 0
    with np.load(tmp_path / "o.npz") as result:
        np.testing.assert_array_equal(drawn[0], result["labels"])


def test_plot_with_several_runs(capsys, seed, tmp_path):
    data, _, _ = seed
    status, _, _ = run(capsys, data, "--init", "random", "--plot", tmp_path / "it.svg")
    assert status == 0 and (tmp_path / "it.svg").read_text().lstrip().startswith("<?xml")


def test_through_python_m(seed, tmp_path):
    data, _, _ = seed
    done = subprocess.run([sys.executable, "-m", "fastkm", "cluster", str(data), "-k", "3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cluster sizes: " in done.stdout


# --- errors: one line, non-zero status, nothing written ----------------------------------


def assert_one_error(status, out, err, *mentions):
    assert status != 0
    assert out == [] and len(err) == 1, err
    assert err[0].startswith("fastkm: error: ")
    for text in mentions:
        assert text in err[0], err[0]


@pytest.mark.parametrize("content, extra, mentions", [
    ("x,y\n1,2\n3,abc\n", [], ["column 'y' is not numeric", "line 3", "'abc'"]),
    ("name,x\nalice,1\nbob,2\n", [], ["column 'name' is not numeric"]),
    ("x,y\n1,2\n3,\n4,5\n", [], ["line 3, column 'y'", "an empty cell", "missing values"]),
    ("1,2\nnan,3\n4,5\n", [], ["line 2, column 'x0'", "'nan' is not a finite number"]),
    ("x,y\n1,2\n3,4\n", ["-k", "3"], ["2 rows, fewer than the 3 clusters"]),
    ("x\n1\n2\n3\n4\n", ["--plot", "p.png"], ["--plot needs at least 2 columns"]),
    ("x,y\n1,2\n3,4\n", ["--columns", "x,w", "-k", "1"], ["unknown column 'w'",
                                                          "the columns are x, y"]),
    ("1,2\n3,4\n", ["--columns", "2", "-k", "1"], ["unknown column '2'", "below 2"]),
    ("x,y\n1,2\n3,4,5\n", [], ["line 3 has 3 fields, expected 2"]),
    ("x,y\n", [], ["a header and no data rows"]),
    ("", [], ["no data rows"]),
    ("x,y\n1e308,1e308\n-1e308,-1e308\n1e308,-1e308\n0,0\n", ["-k", "2"],
     ["values too large", "rescale"]),
    ("x,y\n1,2\n3," + "4" * 200000 + "\n5,6\n", [], ["field limit"]),
    ("x,y\n1,2\n3,4\n", ["--columns", "\u00b2", "-k", "1"], ["unknown column '\u00b2'"]),
    ("x,y\n1,2\n3,4\n", ["--columns", "x,0", "-k", "1"], ["'0' is given twice"]),
    # A first row whose only non-numbers are missing values is data, not a header.
    ("1.0,NA\n2,3\n4,5\n6,7\n", ["-k", "2"], ["column 'x1' is not numeric", "line 1"]),
    ("1.0,\n2,3\n4,5\n6,7\n", ["-k", "2"], ["line 1, column 'x1'", "an empty cell"]),
    ("a,b\nNA,NA\n1,2\n3,4\n", ["-k", "2"], ["column 'a' is not numeric", "line 2"]),
    # Line numbers (blank lines counted) and the cell as written.
    ("a,b\n\n1,2\n\n3,4\n5,inf\n", ["-k", "1"], ["line 6, column 'b'", "'inf' is not"]),
    ("a,b\n1,2\n3,4\n5,1e400\n", ["-k", "1"], ["line 4", "'1e400' is too large"]),
    ("a,a,b\n1,10,100\n2,20,200\n", ["-k", "1", "--columns", "a"],
     ["column name 'a' is ambiguous (columns 0 and 1)"]),
    # Numbers as float() reads them but no CSV reader does.
    ("a,b\n1,2\n3,4\n5,1_000\n", ["-k", "1"], ["column 'b' is not numeric", "'1_000'"]),
    ("a,b\n1,2\n3,4\n5,\uff11\uff10\n", ["-k", "1"], ["column 'b' is not numeric"]),
])
@pytest.mark.filterwarnings("error")
def test_bad_data(capsys, tmp_path, content, extra, mentions):
    path = tmp_path / "d.csv"
    path.write_text(content)
    status, out, err = run(capsys, path, "-o", tmp_path / "o.csv", *extra)
    assert_one_error(status, out, err, str(path), *mentions)
    assert names(tmp_path) == ["d.csv"]


def test_missing_file(capsys, tmp_path):
    status, out, err = run(capsys, tmp_path / "none.csv", "-o", tmp_path / "o.csv")
    assert_one_error(status, out, err, "none.csv", "No such file")
    assert names(tmp_path) == []


def npy_header_only(shape):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return header.getvalue()


def npz_bytes():
    archive = io.BytesIO()
    np.savez(archive, a=np.ones((3, 2)))
    return archive.getvalue()


@pytest.mark.parametrize("as_init", [False, True])
@pytest.mark.parametrize("content, mention", [
    (b"", "not a numeric .npy array"),
    (npz_bytes(), "an .npz archive"),
    (npy_header_only((10**8, 10**6)), "bad.npy"),  # 728 TiB: too large, or truncated
])
def test_bad_npy(capsys, seed, tmp_path, content, mention, as_init):
    data, _, _ = seed
    bad = tmp_path / "bad.npy"
    bad.write_bytes(content)
    args = [data, "--init", bad] if as_init else [bad]
    status, out, err = run(capsys, *args, "-o", tmp_path / "o.csv")
    assert_one_error(status, out, err, "bad.npy", mention)
    assert names(tmp_path) == ["bad.npy", "ex7.csv", "init.csv"]


@pytest.mark.parametrize("init, mentions", [
    ("3,3\n6,2\n", ["init.csv", "shape (2, 2); expected (3, 2)"]),
    ("3,3,1\n6,2,1\n8,5,1\n", ["init.csv", "shape (3, 3); expected (3, 2)"]),
])
def test_init_file_of_the_wrong_shape(capsys, seed, tmp_path, init, mentions):
    data, init_file, _ = seed
    init_file.write_text(init)
    status, out, err = run(capsys, data, "-k", 3, "--init", init_file, "-o",
                           tmp_path / "o.csv", "--plot", tmp_path / "p.png")
    assert_one_error(status, out, err, *mentions)
    assert names(tmp_path) == ["ex7.csv", "init.csv"]


@pytest.mark.parametrize("existing", ["o.csv", "o-centers.csv", "p.png"])
def test_existing_output_without_force(capsys, seed, tmp_path, existing):
    data, _, _ = seed
    (tmp_path / existing).write_text("keep\n")
    status, out, err = run(capsys, data, "-o", tmp_path / "o.csv", "--plot",
                           tmp_path / "p.png")
    assert_one_error(status, out, err, existing, "--force")
    assert names(tmp_path) == sorted(["ex7.csv", "init.csv", existing])
    assert (tmp_path / existing).read_text() == "keep\n"


def test_existing_folder_is_refused_even_with_force(capsys, seed, tmp_path):
    data, _, _ = seed
    (tmp_path / "o-centers.csv").mkdir()
    status, out, err = run(capsys, data, "-o", tmp_path / "o.csv", "--force")
    assert_one_error(status, out, err, f"{tmp_path / 'o-centers.csv'}: is a folder")
    assert names(tmp_path) == ["ex7.csv", "init.csv", "o-centers.csv"]


def test_never_overwrites_the_input(capsys, seed, tmp_path):
    data, _, _ = seed
    before = data.read_text()
    status, out, err = run(capsys, data, "-o", data, "--force")
    assert_one_error(status, out, err, "is the input")
    assert data.read_text() == before


@pytest.mark.parametrize("args, mentions", [
    (["-k", "0"], ["-k must be at least 1"]),
    (["--max-iter", "0"], ["--max-iter must be at least 1"]),
    (["--seed", "-5"], ["--seed must be from 0 to 4294967295"]),
    (["--seed", str(2**32)], ["--seed must be from 0 to 4294967295"]),
    (["-o", "out.txt"], ["-o must end in .csv or .npz"]),
    (["--plot", "p.jpg"], ["--plot must end in .png, .pdf or .svg"]),
    (["--panels"], ["give --plot FILE too"]),
    (["-k", "x"], ["invalid int value"]),
])
def test_usage_errors(capsys, seed, tmp_path, args, mentions):
    data, _, _ = seed
    status, out, err = run(capsys, data, *args)
    assert_one_error(status, out, err, *mentions)
    assert status == 2
    assert names(tmp_path) == ["ex7.csv", "init.csv"]


def test_plot_without_matplotlib(capsys, seed, tmp_path, monkeypatch):
    data, _, _ = seed
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    status, out, err = run(capsys, data, "-o", tmp_path / "o.csv", "--plot",
                           tmp_path / "p.png")
    assert_one_error(status, out, err, "install fastkm[plot]")
    assert names(tmp_path) == ["ex7.csv", "init.csv"]


@pytest.mark.parametrize("failure", [
    OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_no_output(capsys, seed, tmp_path, monkeypatch, failure):
    # The second file's write fails: the first, written already, is not left behind.
    import fastkm.image._io

    data, _, _ = seed
    calls = []
    write = fastkm.image._io._write_temporary

    def failing(path, content):
        calls.append(path)
        if len(calls) == 2:
            raise failure
        return write(path, content)

    monkeypatch.setattr(fastkm.image._io, "_write_temporary", failing)
    status, out, err = run(capsys, data, "-k", 2, "-o", tmp_path / "o.csv", "--plot",
                           tmp_path / "p.png")
    assert status == (1 if isinstance(failure, OSError) else 130) and len(calls) == 2
    assert names(tmp_path) == ["ex7.csv", "init.csv"]


def test_ctrl_c_during_the_renames_leaves_every_output(capsys, seed, tmp_path, monkeypatch):
    # A SIGINT sent to the process (the kernel may hand it to one of OpenMP's threads) on
    # the first rename is held back until all are done, then raised.
    import signal

    import fastkm.cli

    data, _, _ = seed
    replace = os.replace
    renames = []

    def interrupted_replace(source, target):
        renames.append(target)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        replace(source, target)

    monkeypatch.setattr(fastkm.cli.os, "replace", interrupted_replace)
    status, out, err = run(capsys, data, "-k", 2, "-o", tmp_path / "o.csv", "--plot",
                           tmp_path / "p.png")
    assert status == 130 and len(renames) == 3 and err == ["fastkm: error: interrupted"]
    assert names(tmp_path) == ["ex7.csv", "init.csv", "o-centers.csv", "o.csv", "p.png"]


def test_out_of_memory_is_one_line(capsys, seed, tmp_path, monkeypatch):
    import fastkm.cli

    def exhausted(*args):
        raise MemoryError

    monkeypatch.setattr(fastkm.cli, "_fit_and_render", exhausted)
    data, _, _ = seed
    status, out, err = run(capsys, data, "-o", tmp_path / "o.csv")
    assert_one_error(status, out, err, str(data), "not enough memory")
    assert status == 1


def test_panels_help_says_at_most_12(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "--help"])
    assert "at most 12" in " ".join(capsys.readouterr().out.split())


def test_too_few_distinct_rows(capsys, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,1\n1,1\n1,1\n")
    status, out, err = run(capsys, path, "-k", 2, "-o", tmp_path / "o.npz")
    assert_one_error(status, out, err, str(path), "distinct")
    assert names(tmp_path) == ["d.csv"]
