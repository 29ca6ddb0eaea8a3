"""A process-wide budget for the memory decoded images take.

A compressed image says little about what decoding it costs: a 194 KB PNG of 7071x7071 RGBA
pixels needs 200 MB once decoded, twice that while a thumbnail is derived from it. Every full
decode in a process (upload validation, thumbnails, crops, the worker's reference images)
reserves its pixel memory here first and waits while the budget is spent, so concurrent
requests queue for memory instead of multiplying it.

Waiters are served in arrival order, so a large image is not starved by a stream of small
ones; one operation larger than the whole budget runs alone. When the last reservation is
released the C allocator is asked to hand freed pages back to the system (glibc keeps them
otherwise, and the process would stay at its peak).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

DEFAULT_DECODE_MEMORY_BUDGET_MB: Final = 512
_MB: Final = 1024 * 1024
# Trimming walks the allocator's arenas: worth it only after a large image was freed.
_TRIM_AFTER_BYTES: Final = 32 * _MB

# Bytes per pixel Pillow uses in memory: 1 for single-byte modes, 2 for 16-bit greyscale,
# 4 for everything else (RGB is stored as 4 bytes per pixel, like RGBA).
_ONE_BYTE_MODES: Final = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def bytes_per_pixel(mode: str) -> int:
    if mode in _ONE_BYTE_MODES:
        return 1
    if mode in _TWO_BYTE_MODES:
        return 2
    return 4


def image_bytes(width: int, height: int, mode: str = "RGBA") -> int:
    """Memory Pillow needs for one decoded ``width`` x ``height`` image in ``mode``."""
    return max(width, 0) * max(height, 0) * bytes_per_pixel(mode)


def _malloc_trim() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        trim = None
    if trim is None:  # not glibc: nothing to do
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release_free_pages() -> None:
        trim(0)

    return release_free_pages


class DecodeBudget:
    """A weighted semaphore counted in bytes, first come first served."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError("the decode budget must be positive")
        self._capacity = capacity_bytes
        self._in_use = 0
        self._waiting: collections.deque[object] = collections.deque()
        self._cond = threading.Condition()
        self._trim = _malloc_trim()
        self._freed_since_trim = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._in_use

    @property
    def waiting(self) -> int:
        """How many reservations are waiting for memory."""
        with self._cond:
            return len(self._waiting)

    def resize(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError("the decode budget must be positive")
        with self._cond:
            self._capacity = capacity_bytes
            self._cond.notify_all()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` of the budget for the duration of the block (waiting for it first)."""
        with self._cond:
            cost = min(max(nbytes, 1), self._capacity)  # larger than the budget: run alone
            ticket = object()
            self._waiting.append(ticket)
            try:
                while self._waiting[0] is not ticket or self._in_use + cost > self._capacity:
                    self._cond.wait()
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._in_use += cost
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= cost
                self._freed_since_trim += cost
                trim = self._in_use == 0 and self._freed_since_trim >= _TRIM_AFTER_BYTES
                if trim:
                    self._freed_since_trim = 0
                self._cond.notify_all()
            if trim:
                self._trim()


_budget = DecodeBudget(DEFAULT_DECODE_MEMORY_BUDGET_MB * _MB)


def decode_budget() -> DecodeBudget:
    """The process's budget (every decoder in the process shares it)."""
    return _budget


def configure_decode_budget(megabytes: int) -> None:
    """Set the process's budget (from ``DECODE_MEMORY_BUDGET_MB``, at service start)."""
    _budget.resize(megabytes * _MB)
    _map_large_blocks()


_M_MMAP_THRESHOLD: Final = -3
_MMAP_THRESHOLD_BYTES: Final = 1 * _MB


def _map_large_blocks() -> None:
    """Make glibc serve allocations of 1 MiB and more (Pillow allocates pixels in 16 MiB
    blocks) straight from the kernel, and give them back on free.

    By default glibc raises this threshold to the size of the largest block freed so far, so
    after the first large image Pillow's blocks come from per-thread heaps instead; freed
    there, they stay in the process (and fragment across threads), which is how a few
    concurrent decodes left the api at gigabytes. A fixed threshold turns that off. The
    ``MALLOC_MMAP_THRESHOLD_`` environment variable, when set, is left to win."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    except OSError:
        mallopt = None
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
