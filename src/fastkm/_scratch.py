"""Scratch memory kept from one fit to the next.

A fit's large temporaries (the grid search's tables, the distinct rows, a bounded pass's
bounds, the labels) are allocated through :func:`empty` and :func:`zeros`. Freed, they would
go back to the operating system (glibc returns large blocks), and the next fit would fault
every page in again: on the 2-core virtual machine of BENCHMARKS.md, 10 to 20 ms of a 70 ms
fit of the 4.4-megapixel photo, and more with two threads faulting at once. Here the
buffers are cached instead, and handed out again to later requests.

A cached buffer is handed out only when nothing references it any longer (no array, view or
slice of it is alive: its reference count), so memory in use is never shared; an array
given to the caller (the labels of a fit) simply keeps its buffer busy until it is dropped
(see :func:`owned`).
A request takes the smallest free buffer that holds it, else a new one. At most
``CACHE_BYTES`` are kept, the least recently used dropped first (free ones before busy
ones). :func:`release_memory` drops them all.
"""

import sys
import threading

import numpy as np

#: Requests below this size go to numpy as usual (malloc keeps small blocks anyway), and
#: so do those above CACHE_BYTES.
MIN_BYTES = 1 << 20
#: The most bytes kept between fits.
CACHE_BYTES = 256 << 20

_lock = threading.Lock()
_buffers = []  # uint8 arrays, least recently used first


def _reference_count_when_free():
    """sys.getrefcount of a buffer that only the cache's list holds (read, not assumed: it
    depends on the interpreter)."""
    held = [np.empty(1, np.uint8)]
    return sys.getrefcount(held[0])


_FREE = _reference_count_when_free()


def empty(shape, dtype):
    """``numpy.empty(shape, dtype)``, from a cached buffer where one is free.

    Examples
    --------
    >>> a = empty((1000, 300), np.float64)
    >>> b = empty((1000, 300), np.float64)  # a is alive: another buffer
    >>> np.shares_memory(a, b)
    False
    >>> del a
    >>> c = empty((500, 300), np.float64)  # a's buffer is free again
    >>> c.shape, c.dtype
    ((500, 300), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not MIN_BYTES <= nbytes <= CACHE_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        chosen = None
        for i in range(len(_buffers)):
            if _buffers[i].nbytes >= nbytes and _is_free(i) and (
                    chosen is None or _buffers[i].nbytes < _buffers[chosen].nbytes):
                chosen = i
        if chosen is None:
            buffer = np.empty(nbytes, np.uint8)
            # Over the cap: the least recently used go, free ones first (a busy one only
            # leaves the cache; its arrays keep it alive).
            total = nbytes + sum(b.nbytes for b in _buffers)
            for free in (True, False):
                i = 0
                while total > CACHE_BYTES and i < len(_buffers):
                    if _is_free(i) == free:
                        total -= _buffers[i].nbytes
                        del _buffers[i]
                    else:
                        i += 1
        else:
            buffer = _buffers.pop(chosen)
        _buffers.append(buffer)
        # (A view's base is the buffer itself: every array made from it holds it.)
        return buffer[:nbytes].view(dtype).reshape(shape)


def _is_free(i):
    """Whether nothing but the cache holds buffer i."""
    return sys.getrefcount(_buffers[i]) == _FREE


def owned(array):
    """``array``, or a copy of it when it lies in a cached buffer over twice its size: an
    array handed to the caller (a fit's labels) keeps its whole buffer busy, and a small
    fit after a large one would otherwise pin the large one's memory."""
    base = array.base
    if isinstance(base, np.ndarray) and base.nbytes > 2 * array.nbytes:
        return array.copy()
    return array


def zeros(shape, dtype):
    """``numpy.zeros(shape, dtype)``, from a cached buffer where one is free."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def full(shape, value, dtype):
    """``numpy.full(shape, value, dtype)``, from a cached buffer where one is free."""
    out = empty(shape, dtype)
    out.fill(value)
    return out


def cached_bytes():
    """How many bytes the cache holds (free or in use)."""
    with _lock:
        return sum(b.nbytes for b in _buffers)


def release_memory():
    """Give back the memory fastkm keeps between fits (buffers still in use stay alive
    with their arrays).

    fastkm keeps the large temporaries of a fit (up to 256 MiB) for the next one, which
    then writes to memory already mapped: see ``fastkm._scratch``.

    Examples
    --------
    >>> import fastkm
    >>> fastkm.release_memory()
    """
    with _lock:
        _buffers.clear()
