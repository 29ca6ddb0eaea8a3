"""Small helpers of the client surface, shared by `Easel` and `AsyncEasel`."""

from __future__ import annotations

import time
from typing import Protocol

import httpx_sse

from easel_client.errors import EaselError, WaitTimeout
from easel_client.models import Generation


class HasId(Protocol):
    @property
    def id(self) -> str: ...


#: Where a method takes a board, node, edge, generation or asset: its id, or the object itself.
Identified = str | HasId


def ident(value: Identified) -> str:
    return value if isinstance(value, str) else value.id


def wait_timeout(gen: Generation | None = None) -> WaitTimeout:
    what = f"generation {gen.id} (still {gen.status})" if gen is not None else "the generation"
    return WaitTimeout(f"Timed out waiting for {what}.", code="wait_timeout")


def deadline_left(deadline: float, gen: Generation | None = None) -> float:
    """Seconds left before `deadline` (a `time.monotonic()` value); raises `WaitTimeout` when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise wait_timeout(gen)
    return left


def not_an_event_stream(exc: httpx_sse.SSEError) -> EaselError:
    return EaselError(str(exc), code="not_an_event_stream", status=200)
