"""Live board events. Changes stage events on their database session; they are published to a
bounded Redis Stream per board only after that transaction commits (never for a rollback), from
whichever process made the change. Stream entry ids grow per board and serve as SSE ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession

log = logging.getLogger(__name__)

# Keeps well over the contract's "at least the last 1000 events" per board.
STREAM_MAXLEN = 5000
_PENDING = "easel_pending_events"

Publisher = Callable[[str, str, dict[str, Any]], None]
_publisher: Publisher | None = None


def stream_key(board_id: str) -> str:
    return f"easel:board:{board_id}:events"


def stage(session: OrmSession, board_id: str, event: str, data: dict[str, Any]) -> None:
    session.info.setdefault(_PENDING, []).append((board_id, event, data))


class RedisEventPublisher:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __call__(self, board_id: str, event: str, data: dict[str, Any]) -> None:
        self.client.xadd(
            stream_key(board_id),
            {"event": event, "data": json.dumps(data, separators=(",", ":"))},
            maxlen=STREAM_MAXLEN,
            approximate=True,
        )


def _after_commit(session: OrmSession) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending or _publisher is None:
        return
    for board_id, event, data in pending:
        try:
            _publisher(board_id, event, data)
        except Exception:  # the change is committed; a lost live event must not fail it
            log.exception("could not publish %s for board %s", event, board_id)


def _after_rollback(session: OrmSession) -> None:
    session.info.pop(_PENDING, None)


def install_publisher(publisher: Publisher | None) -> None:
    """Route committed events to `publisher` (one per process)."""
    global _publisher
    _publisher = publisher
    if not sa_event.contains(OrmSession, "after_commit", _after_commit):
        sa_event.listen(OrmSession, "after_commit", _after_commit)
        sa_event.listen(OrmSession, "after_soft_rollback", lambda s, _t: _after_rollback(s))
