"""Keyset pages, newest first: ids are time-ordered, so `id < cursor` is the next page."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

T = TypeVar("T")


def newest_first(session: Session, query: SelectOfScalar[T], id_column: Any, limit: int,
                 cursor: str | None) -> list[T]:
    """One page plus one row, so the caller can tell whether another page exists."""
    if cursor:
        query = query.where(col(id_column) < cursor)
    return list(session.exec(query.order_by(col(id_column).desc()).limit(limit + 1)))
