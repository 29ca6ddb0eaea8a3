from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query

T = TypeVar("T")


class PageParams:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=100)] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor


PageDep = Annotated[PageParams, Depends(PageParams)]


def page(rows: Sequence[T], limit: int, view: Callable[[T], dict[str, Any]], key: Callable[[T], str]) -> dict[str, Any]:
    """Rows were fetched with limit + 1 to learn whether another page exists."""
    items = list(rows[:limit])
    next_cursor = key(items[-1]) if len(rows) > limit and items else None
    return {"items": [view(r) for r in items], "next_cursor": next_cursor}
