"""Request dependencies: the process context and the calling account (same rules as the api)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from easel_assets.context import AppContext
from easel_shared.models import Account
from easel_shared.web import authenticate


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_account(ctx: CtxDep, authorization: Annotated[str | None, Header()] = None) -> Account:
    return authenticate(ctx.engine, authorization)


AccountDep = Annotated[Account, Depends(get_account)]
