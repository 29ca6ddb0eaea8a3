"""Readiness checks shared by every service: database, Redis, object storage."""

from __future__ import annotations

import redis
from sqlalchemy.engine import Engine

from easel_shared.db import ping
from easel_shared.storage import ObjectStore


def readiness(engine: Engine, client: redis.Redis, store: ObjectStore) -> dict[str, str]:
    """Name of each dependency -> "ok" or a short description of what failed."""
    checks: dict[str, str] = {}
    try:
        ping(engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {exc.__class__.__name__}"
    try:
        client.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {exc.__class__.__name__}"
    try:
        store.check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unavailable: {exc.__class__.__name__}"
    return checks
