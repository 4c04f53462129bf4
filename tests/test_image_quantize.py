"""fastkm.image: quantize, fit_palette, apply_palette against plain NumPy."""

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import fastkm
from fastkm._lloyd import lloyd
from fastkm.image import apply_palette, fit_palette, quantize
from fastkm.image import _quantize
from fastkm.image._quantize import _Histogram


def photo_like(h=60, w=80, seed=0):
    """A smooth image with noise: many distinct colours, like a small photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w * 200, y / h * 180 + 40, (x + y) / (h + w) * 120 + 60], axis=-1)
    return np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)


def psnr(a, b):
    return 10 * np.log10(255.0 ** 2 / ((a.astype(float) - b.astype(float)) ** 2).mean())


def test_histogram_matches_numpy_unique():
    image = photo_like()
    hist = _Histogram(image, n_threads=2)
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    np.testing.assert_array_equal(hist.colours, colours)
    np.testing.assert_array_equal(hist.counts, counts)
    labels = np.arange(len(colours)) % 256
    lookup = {tuple(c): l for c, l in zip(colours, labels)}
    expected = np.array([lookup[tuple(p)] for p in image.reshape(-1, 3)]).reshape(60, 80)
    np.testing.assert_array_equal(hist.remap(labels), expected)


def test_histogram_k_means_equals_k_means_of_every_pixel():
    """Weighted k-means of the distinct colours is k-means of all the pixels."""
    image = photo_like()
    hist = _Histogram(image, n_threads=2)
    pixels = image.reshape(-1, 3).astype(np.float64)
    init = pixels[[0, 1000, 2500, 4000, 4799]]
    on_histogram = lloyd(hist.colours.astype(np.float64), hist.counts.astype(np.float64),
                         init, max_iter=20, tol=0, n_threads=2)
    on_pixels = fastkm.kmeans(pixels, 5, init=init, max_iter=20, tol=0)
    np.testing.assert_allclose(on_histogram[0], on_pixels.centers, rtol=1e-12)
    assert on_histogram[2] == pytest.approx(on_pixels.inertia, rel=1e-12)


def test_quantize_result_is_consistent():
    image = photo_like()
    q = quantize(image, 16)
    assert q.palette.shape == (16, 3) and q.palette.dtype == np.uint8
    assert q.indices.shape == (60, 80) and q.indices.dtype == np.uint8
    np.testing.assert_array_equal(q.to_array(), q.palette[q.indices])
    # Each pixel gets its nearest palette colour, and mse/psnr describe the result.
    d2 = ((image[:, :, None, :].astype(float) - q.palette.astype(float)) ** 2).sum(-1)
    np.testing.assert_array_equal(q.indices, d2.argmin(-1))
    assert q.mse == ((q.to_array().astype(float) - image) ** 2).mean()  # exactly
    assert q.psnr == pytest.approx(psnr(q.to_array(), image))
    pil = q.to_pil()
    assert pil.mode == "P" and np.array_equal(np.asarray(pil.convert("RGB")), q.to_array())


def test_quantize_palette_is_a_k_means_fixed_point():
    """One more Lloyd step on all pixels moves the palette by less than the rounding."""
    image = photo_like()
    q = quantize(image, 8)
    pixels = image.reshape(-1, 3).astype(np.float64)
    step = fastkm.kmeans(pixels, 8, init=q.palette.astype(np.float64), max_iter=1, tol=0)
    assert np.abs(step.centers - q.palette).max() < 1.0


def test_quantize_beats_plain_median_cut_and_more_colours_help():
    image = photo_like()
    ours = [quantize(image, k).psnr for k in (4, 16, 64)]
    assert ours[0] < ours[1] < ours[2]
    pil = Image.fromarray(image).quantize(16, method=Image.Quantize.MEDIANCUT)
    assert ours[1] > psnr(np.asarray(pil.convert("RGB")), image)


def test_quantize_is_deterministic_across_threads_and_runs(tmp_path):
    image = photo_like(120, 90, seed=3)
    results = [quantize(image, 32, n_threads=t) for t in (1, 2, 2)]
    for other in results[1:]:
        assert np.array_equal(other.palette, results[0].palette)
        assert np.array_equal(other.indices, results[0].indices)
    paths = []
    for i, t in enumerate((1, 2)):
        paths.append(tmp_path / f"out{i}.png")
        quantize(image, 32, n_threads=t, dither=True).save(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_many_colours_path_uses_bins_and_stays_consistent():
    """Above the bin threshold the result is still each pixel's nearest palette colour."""
    image = np.random.default_rng(4).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    q = quantize(image, 12)
    d2 = ((image[:, :, None, :].astype(float) - q.palette.astype(float)) ** 2).sum(-1)
    np.testing.assert_array_equal(q.indices, d2.argmin(-1))


def test_very_many_colours_path_ends_at_a_lloyd_fixed_point_of_the_pixels():
    """Above FINE_MIN_COLOURS (6-bit bins, then 7-bit bins, then exact colours) the palette
    is still each cluster's mean, up to rounding to 0-255 and the tolerance."""
    image = np.random.default_rng(9).integers(0, 256, size=(800, 800, 3), dtype=np.uint8)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > _quantize.FINE_MIN_COLOURS
    q = quantize(image, 12)
    pixels = image.reshape(-1, 3).astype(float)
    labels = q.indices.reshape(-1)
    d2 = ((pixels[:50_000, None, :] - q.palette.astype(float)) ** 2).sum(-1)
    np.testing.assert_array_equal(labels[:50_000], d2.argmin(-1))
    for j in range(12):
        mean = pixels[labels == j].mean(axis=0)
        assert np.abs(mean - q.palette[j]).max() < 1.0


def test_few_colours_are_kept_exactly():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:5] = [255, 0, 0]
    image[5:, :5] = [0, 0, 255]
    q = quantize(image, 16)
    assert sorted(map(tuple, q.palette.tolist())) == [(0, 0, 0), (0, 0, 255), (255, 0, 0)]
    assert q.mse == 0 and q.psnr == float("inf")
    np.testing.assert_array_equal(q.to_array(), image)


def test_dither_keeps_local_averages_and_little_psnr():
    image = photo_like(96, 128, seed=1)
    plain = quantize(image, 8)
    dithered = quantize(image, 8, dither=True)
    assert not np.array_equal(plain.indices, dithered.indices)
    assert dithered.mse == pytest.approx(((dithered.to_array().astype(float) - image) ** 2)
                                         .mean())

    def blurred_error(q):  # error of 4x4 block means: what the eye averages
        diff = q.to_array().astype(float) - image
        return np.abs(diff.reshape(24, 4, 32, 4, 3).mean(axis=(1, 3))).mean()

    assert blurred_error(dithered) < blurred_error(plain)
    assert dithered.psnr > plain.psnr - 3
    half = quantize(image, 8, dither=0.5)
    assert half.psnr >= dithered.psnr - 0.5


def test_transparency():
    image = np.zeros((20, 20, 4), np.uint8)
    image[..., :3] = photo_like(20, 20)
    image[..., 3] = 255
    image[:5] = 0  # fully transparent rows
    q = quantize(image, 8)
    assert q.palette.shape == (8, 4)
    assert (q.palette[q.indices[:5]][..., 3] == 0).all()
    assert (q.palette[q.indices[5:]][..., 3] == 255).all()
    image[5:10, :, 3] = 128  # partial alpha: an RGBA palette with it
    q = quantize(image, 8)
    assert 128 in q.palette[:, 3] and (q.palette[q.indices[:5]][..., 3] == 0).all()
    with pytest.raises(ValueError, match="partial transparency"):
        quantize(image, 8, dither=True)


def test_oklab_palette():
    image = photo_like()
    q = quantize(image, 16, colorspace="oklab")
    assert q.palette.shape == (16, 3)
    assert 15 < q.psnr < quantize(image, 16).psnr + 1e-9


def test_shared_palette():
    a, b = photo_like(seed=1), photo_like(seed=2)[:, ::-1]
    palette = fit_palette([a, b], 16)
    assert palette.shape == (16, 3)
    qa, qb = apply_palette(a, palette), apply_palette(b, palette)
    assert np.array_equal(qa.palette, palette) and np.array_equal(qb.palette, palette)
    assert qa.psnr > 20 and qb.psnr > 20


@pytest.mark.parametrize("kwargs, message", [
    ({"n_colors": 0}, "n_colors"), ({"n_colors": 257}, "n_colors"),
    ({"n_colors": 2.5}, "n_colors"), ({"colorspace": "hsv"}, "colorspace"),
    ({"dither": 0}, "dither"), ({"dither": 1.5}, "dither"), ({"dither": "yes"}, "dither"),
    ({"n_init": 0}, "n_init"), ({"max_iter": 0}, "max_iter"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize(photo_like(), **{"n_colors": 8, **kwargs})


def test_bad_palette():
    for palette in [np.zeros((0, 3)), np.zeros((3, 2)), np.full((2, 3), 300), np.zeros((257, 3))]:
        with pytest.raises(ValueError, match="palette"):
            apply_palette(photo_like(), palette)


def test_bird_beats_the_seed_exercise(data_dir):
    """The seed's bird with 16 colours: higher PSNR than its method (random rows, 10 steps)."""
    bird = np.asarray(Image.open(data_dir / "bird_small.png").convert("RGB"))
    pixels = bird.reshape(-1, 3).astype(np.float64)
    ours = quantize(bird, 16).psnr
    for seed in range(5):
        rng = np.random.default_rng(seed)
        centres = pixels[rng.permutation(len(pixels))[:16]]
        for _ in range(10):
            labels = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            centres = np.array([pixels[labels == j].mean(0) if (labels == j).any()
                                else centres[j] for j in range(16)])
        labels = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        seed_image = np.rint(centres[labels]).reshape(bird.shape)
        assert ours > psnr(seed_image, bird)


def test_counting_and_sorting_histograms_agree(monkeypatch):
    """Large images take the 2**24-bin counting pass: same colours, counts and remap."""
    import fastkm.image._quantize as quantize_module

    image = np.zeros((50, 40, 4), np.uint8)
    image[..., :3] = photo_like(50, 40)
    image[..., 3] = 255
    image[:7, :9, 3] = 0
    image[:7, :9, :3] = 17  # a colour seen only in transparent pixels
    counting_passes = []
    count_rgb = _Histogram._count_rgb
    monkeypatch.setattr(_Histogram, "_count_rgb",
                        lambda self: counting_passes.append(1) or count_rgb(self))
    sorted_hist = _Histogram(image, n_threads=2)
    assert not counting_passes
    monkeypatch.setattr(quantize_module, "COUNTING_MIN_PIXELS", 0)
    counted_hist = _Histogram(image, n_threads=2)
    assert counting_passes
    np.testing.assert_array_equal(sorted_hist.colours, counted_hist.colours)
    np.testing.assert_array_equal(sorted_hist.counts, counted_hist.counts)
    labels = np.arange(len(sorted_hist.colours)) % 256
    visible = image[..., 3] > 0
    np.testing.assert_array_equal(sorted_hist.remap(labels)[visible],
                                  counted_hist.remap(labels)[visible])
    a = quantize(image, 8, dither=True)
    monkeypatch.setattr(quantize_module, "COUNTING_MIN_PIXELS", 1 << 30)
    b = quantize(image, 8, dither=True)
    assert np.array_equal(a.palette, b.palette) and np.array_equal(a.indices, b.indices)


def test_error_stays_exact_with_counts_beyond_float32():
    # Two colours of 2**24 + 1 pixels each in one palette entry: float32 weights would round
    # their counts, so the error is counted in integers instead.
    image = np.zeros((2, (1 << 24) + 1, 3), np.uint8)
    image[1, :, 0] = 3
    q = quantize(image, 1)
    assert q.palette.tolist() == [[2, 0, 0]]  # 1.5, rounded to even
    assert q.mse * image.size == (4 + 1) * ((1 << 24) + 1)


def rgba_photo(partial):
    """photo_like with fully transparent rows, black pixels and, if ``partial``, rows of
    partial alpha."""
    image = np.zeros((20, 20, 4), np.uint8)
    image[..., :3] = photo_like(20, 20)
    image[..., 3] = 255
    image[12, :2, :3] = 0  # opaque black: nearest to a [0, 0, 0, 0] entry by colour alone
    image[:5] = 0
    if partial:
        image[5:8, :, 3] = 128
    return image


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("colorspace", ["rgb", "oklab"])
def test_quantize_round_trips_through_apply_palette(partial, colorspace):
    image = rgba_photo(partial)
    q = quantize(image, 8, colorspace=colorspace)
    transparent = np.flatnonzero(q.palette[:, 3] == 0)
    assert len(transparent) == 1 and (q.indices[:5] == transparent[0]).all()
    for palette in (q.palette, fit_palette([image], 8, colorspace=colorspace)):
        again = apply_palette(image, palette, colorspace=colorspace)
        np.testing.assert_array_equal(again.palette, q.palette)
        np.testing.assert_array_equal(again.indices, q.indices)
        assert again.mse == q.mse
    # The opaque part alone, on the same palette: the same indices, its black pixels
    # included (not sent to the transparent entry).
    opaque = apply_palette(image[8:], q.palette, colorspace=colorspace)
    np.testing.assert_array_equal(opaque.indices, q.indices[8:])
    if not partial:
        dithered = quantize(image, 8, dither=True)
        again = apply_palette(image, dithered.palette, dither=True)
        np.testing.assert_array_equal(again.indices, dithered.indices)


def test_apply_palette_adds_a_transparent_entry_and_keeps_every_colour():
    image = np.array([[[255, 0, 0, 255], [0, 255, 0, 255]],
                      [[0, 0, 255, 255], [0, 0, 0, 0]]], np.uint8)
    q = apply_palette(image, [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    assert q.palette.tolist() == [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255],
                                  [0, 0, 0, 0]]
    assert q.indices.tolist() == [[0, 1], [2, 3]] and q.mse == 0
    np.testing.assert_array_equal(q.to_array(), image)
    # Room for one more entry, but not for 257.
    palette = np.stack([np.arange(256)] * 3, axis=1)
    q = apply_palette(image, palette[:255])
    assert len(q.palette) == 256 and q.palette[q.indices[1, 1]].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="transparent entry .* 256 colours"):
        apply_palette(image, palette)


def test_apply_palette_keeps_transparent_entries_for_transparent_pixels():
    # fit_palette's [0, 0, 0, 0] entry: opaque black must not vanish into it.
    palette = fit_palette([np.array([[[9, 9, 9, 255], [0, 0, 0, 0]]], np.uint8)], 2)
    assert palette.tolist() == [[9, 9, 9, 255], [0, 0, 0, 0]]
    q = apply_palette(np.zeros((1, 1, 3), np.uint8), palette)
    assert q.to_array().tolist() == [[[9, 9, 9, 255]]]
    assert q.mse == 81  # per channel of the RGB source
    # A transparent entry anywhere is found and used; visible pixels, partially
    # transparent ones too, never get it.
    palette = [[200, 200, 200, 255], [0, 0, 0, 0], [10, 10, 10, 255], [0, 0, 0, 100]]
    image = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [1, 1, 1, 2], [0, 0, 0, 90]]], np.uint8)
    q = apply_palette(image, palette)
    assert q.palette.tolist() == palette and q.indices.tolist() == [[1, 2, 3, 3]]
    q = apply_palette(image[:, 1:2], palette)  # no transparent pixels: still never entry 1
    assert q.indices.tolist() == [[2]]
    with pytest.raises(ValueError, match="no visible entry"):
        apply_palette(image, [[0, 0, 0, 0]])
    assert apply_palette(image[:, :1], [[5, 5, 5, 255], [0, 0, 0, 0]]).indices.tolist() == \
        [[1]]


def test_apply_palette_error_is_per_channel_of_the_source():
    image = photo_like()
    palette = fit_palette(image, 16)
    q = apply_palette(image, palette)
    assert q.mse == ((q.to_array().astype(float) - image) ** 2).mean()
    # The same colours as RGBA, opaque, with a transparent entry too: the same pixels, so
    # the same error over the source's 3 channels.
    opaque = np.hstack([palette, np.full((16, 1), 255, np.uint8)])
    for rgba in (opaque, np.vstack([opaque, [[0, 0, 0, 0]]])):
        again = apply_palette(image, rgba)
        np.testing.assert_array_equal(again.indices, q.indices)
        assert again.mse == q.mse
    # A source with alpha: the error is over its 4 channels, transparent pixels exact.
    image = rgba_photo(partial=True)
    q = apply_palette(image, fit_palette(image, 8))
    diff = q.to_array().astype(float) - image
    diff[image[:, :, 3] == 0] = 0
    assert q.mse == pytest.approx((diff ** 2).mean(), rel=1e-12)


def test_fit_palette_takes_one_path(tmp_path):
    image = photo_like()
    Image.fromarray(image).save(tmp_path / "a.png")
    expected = fit_palette([image], 4)
    for one in (tmp_path / "a.png", str(tmp_path / "a.png"), image, Image.fromarray(image)):
        np.testing.assert_array_equal(fit_palette(one, 4), expected)


def test_apply_palette_counts_alpha_of_translucent_entries():
    # An opaque image on a palette with a translucent entry: alpha is part of "nearest".
    image = np.full((1, 1, 3), [255, 0, 0], np.uint8)
    q = apply_palette(image, [[255, 0, 0, 10], [250, 0, 0, 255]])
    assert q.indices.tolist() == [[1]] and q.mse == 25 / 4
    with pytest.raises(ValueError, match="partial transparency"):
        apply_palette(image, [[255, 0, 0, 10], [250, 0, 0, 255]], dither=True)


def test_apply_palette_rejects_an_unknown_colorspace():
    with pytest.raises(ValueError, match="colorspace"):
        apply_palette(photo_like(), [[0, 0, 0], [255, 255, 255]], colorspace="nonsense")


def test_save_keeps_the_png_gamma_and_resolution(tmp_path, data_dir):
    # A gamma-tagged source renders with another brightness without its gAMA chunk.
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", (100000).to_bytes(4, "big"))
    source = tmp_path / "gamma1.png"
    with Image.open(data_dir / "bird_small.png") as bird:
        bird.save(source, pnginfo=info, dpi=(300, 300))
    with Image.open(source) as img:
        assert img.info["gamma"] == 1.0
        dpi = img.info["dpi"]
        from_pil = quantize(img, 4)
        from_array = quantize(np.asarray(img), 4)  # an array carries no metadata
    for q in (quantize(source, 16), apply_palette(source, fit_palette(source, 8)), from_pil):
        assert q.metadata == {"gamma": 1.0, "dpi": dpi}
        q.save(tmp_path / "out.png", overwrite=True)
        with Image.open(tmp_path / "out.png") as img:
            assert img.info["gamma"] == 1.0 and img.info["dpi"] == dpi
    from_array.save(tmp_path / "array.png")
    with Image.open(tmp_path / "array.png") as img:
        assert "gamma" not in img.info and "dpi" not in img.info
