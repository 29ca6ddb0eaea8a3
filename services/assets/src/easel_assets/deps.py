"""Request dependencies: the process context and the calling account (same rules as the api)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from easel_assets.context import AppContext
from easel_shared.db import session_scope
from easel_shared.domain.errors import Unauthenticated
from easel_shared.models import Account
from easel_shared.repositories import accounts


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated()
    token = authorization[7:].strip()
    if not token:
        raise Unauthenticated()
    return token


def get_account(ctx: CtxDep, authorization: Annotated[str | None, Header()] = None) -> Account:
    token = _bearer(authorization)
    with session_scope(ctx.engine) as session:
        account = accounts.by_api_key(session, token)
    if account is None:
        raise Unauthenticated()
    return account


AccountDep = Annotated[Account, Depends(get_account)]


class PageParams:
    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=100)] = None,
    ) -> None:
        self.limit = limit
        self.cursor = cursor


PageDep = Annotated[PageParams, Depends(PageParams)]
