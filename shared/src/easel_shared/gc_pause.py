"""Pausing Python's cyclic garbage collector around a burst of allocations.

Building a big board's JSON document allocates tens of thousands of small dicts and lists. None
of them form cycles (reference counting frees them), but each allocation counts towards the
collector's thresholds, so a build triggers many collections, each walking the document built
so far: that is about a third of the build's time. While any thread is inside `gc_paused()`
the collector is off; it comes back when the last one leaves (unless it was off before)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
