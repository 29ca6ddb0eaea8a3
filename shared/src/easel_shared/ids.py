"""Prefixed, time-ordered ids (`nod_…`): sorting by id sorts by creation time, which keyset
pagination relies on. Within one process ids are strictly increasing."""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last = 0


def new_id(prefix: str) -> str:
    global _last
    with _lock:
        now = max(time.time_ns() // 1000, _last + 1)
        _last = now
    return f"{prefix}_{now:014x}{secrets.token_hex(6)}"
