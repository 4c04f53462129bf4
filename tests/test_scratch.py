"""The scratch cache (fastkm._scratch): buffers reused across fits, never while in use."""

import threading

import numpy as np
import pytest

import fastkm
from fastkm import _scratch
from fastkm._isa import core
from tests.conftest import blobs

BIG = _scratch.MIN_BYTES  # bytes: the smallest request the cache serves


def address(a):
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def empty_cache():
    _scratch.release_memory()
    yield
    _scratch.release_memory()


def test_a_free_buffer_is_reused_and_a_busy_one_is_not():
    a = _scratch.empty(BIG, np.uint8)
    first = address(a)
    b = _scratch.empty(BIG // 8, np.float64)  # a is alive: another buffer
    assert not np.shares_memory(a, b)
    view = a[10:20]
    del a  # a slice of it is still alive
    c = _scratch.empty(BIG, np.uint8)
    assert address(c) != first and not np.shares_memory(c, view)
    del view
    d = _scratch.empty((BIG // 16, 2), np.float64)  # a's buffer is free again
    assert address(d) == first
    assert d.shape == (BIG // 16, 2) and d.dtype == np.float64 and d.flags.c_contiguous


def test_zeros_and_full_fill_a_reused_buffer():
    a = _scratch.empty(BIG, np.uint8)
    a[:] = 7
    del a
    assert (_scratch.zeros(BIG, np.uint8) == 0).all()
    assert (_scratch.full(BIG // 4, -1, np.int32) == -1).all()


def test_small_requests_and_the_cap(monkeypatch):
    small = _scratch.empty(BIG // 2 - 8, np.uint8)
    assert small.base is None and _scratch.cached_bytes() == 0  # numpy's own
    monkeypatch.setattr(_scratch, "CACHE_BYTES", 3 * BIG)
    arrays = [_scratch.empty(BIG, np.uint8) for _ in range(5)]
    assert _scratch.cached_bytes() <= 3 * BIG
    huge = _scratch.empty(3 * BIG + 1, np.uint8)  # more than the cache keeps: numpy's
    assert huge.base is None and _scratch.cached_bytes() <= 3 * BIG
    assert all(not np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[:i])


def test_the_cap_drops_the_least_recently_used_free_buffers_first(monkeypatch):
    monkeypatch.setattr(_scratch, "CACHE_BYTES", 4 * BIG)
    old = _scratch.empty(BIG, np.uint8)
    busy = _scratch.empty(BIG, np.uint8)
    recent = _scratch.empty(BIG, np.uint8)
    ids = [id(b) for b in _scratch._buffers]  # least recently used first
    del old, recent  # both free, old the least recently used
    larger = _scratch.empty(2 * BIG, np.uint8)  # 5 BIG in all: old goes
    assert [id(b) for b in _scratch._buffers] == [ids[1], ids[2], id(larger.base)]
    # 7 BIG: the free one goes, then the busy ones, least recently used first
    again = _scratch.empty(3 * BIG, np.uint8)
    assert [id(b) for b in _scratch._buffers] == [id(again.base)]
    busy[:] = 1
    larger[:] = 2
    again[:] = 3
    assert (busy == 1).all() and (larger == 2).all()  # still theirs


def test_threads_never_share_a_buffer_in_use():
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            a = _scratch.empty(int(rng.integers(BIG, 3 * BIG)) // 8, np.int64)
            a.fill(seed)
            if not (a == seed).all():  # another thread wrote over it
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_fits_use_the_cache_and_keep_their_results():
    """A later fit must not write over an earlier fit's labels still held; the kernels
    allocate through the cache (set_allocator)."""
    assert core._allocate_empty is _scratch.empty
    rng = np.random.default_rng(0)
    pixels = (rng.integers(0, 32, size=(400_000, 3)) / 31).astype(np.float32)
    first = fastkm.KMeans(16, n_init=1, random_state=0).fit(pixels)
    kept = first.labels_.copy()
    assert _scratch.cached_bytes() >= 4 * len(pixels)  # the grid search's, at least
    for seed in range(1, 3):
        fastkm.KMeans(16, n_init=1, random_state=seed).fit(pixels[::-1].copy())
        X = blobs(300_000, 8, 50, seed=seed, dtype=np.float32)
        fastkm.KMeans(50, n_init=1, random_state=seed, max_iter=5).fit(X)
    np.testing.assert_array_equal(first.labels_, kept)
    again = fastkm.KMeans(16, n_init=1, random_state=0).fit(pixels)
    np.testing.assert_array_equal(again.labels_, kept)
    np.testing.assert_array_equal(again.cluster_centers_, first.cluster_centers_)


def test_a_small_fit_s_labels_do_not_pin_a_large_buffer():
    large = blobs(1_000_000, 2, 4, seed=1, dtype=np.float32)
    fastkm.KMeans(4, n_init=1, random_state=0, max_iter=2).fit(large)
    small = fastkm.KMeans(4, n_init=1, random_state=0, max_iter=2).fit(large[:300_000])
    labels = small.labels_
    # A cached buffer is used for them only when it is not much larger.
    assert labels.base is None or labels.base.nbytes <= 2 * labels.nbytes
    _scratch.release_memory()
    owned = _scratch.empty(BIG // 4, np.int32)
    assert _scratch.owned(owned) is owned
    assert _scratch.owned(owned[:len(owned) // 3]).base is None


def test_release_memory():
    a = _scratch.empty(BIG, np.uint8)
    del a
    assert _scratch.cached_bytes() > 0
    fastkm.release_memory()
    assert _scratch.cached_bytes() == 0
