from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from easel_api.context import AppContext
from easel_shared.domain.errors import RateLimited, Unauthenticated
from easel_shared.models import Account
from easel_shared.ratelimit import RateLimiter
from easel_shared.web import authenticated, bearer_token

# The dependencies are `async` (the account lookup on a cache miss goes to the thread pool, the
# rate limit is an asyncio Redis call): FastAPI runs every sync dependency in its thread pool, a
# hop there and back each. Three such hops before a generation's handler took 0.47 of the 1.7 ms
# from a request's arrival to its handler (bench/pipeline.py, two cores).


def context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> AppContext:
    return context_of(request)


CtxDep = Annotated[AppContext, Depends(get_ctx)]


async def get_account(ctx: CtxDep, authorization: Annotated[str | None, Header()] = None) -> Account:
    return await authenticated(ctx.engine, authorization, ctx.auth_cache)


AccountDep = Annotated[Account, Depends(get_account)]


async def require_admin(ctx: CtxDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = bearer_token(authorization)
    expected = ctx.settings.admin_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthenticated("A valid admin token is required.")


AdminDep = Annotated[None, Depends(require_admin)]


def _limited(bucket: str, per_minute: Callable[[AppContext], int]) -> Callable[..., Awaitable[None]]:
    async def dependency(request: Request, ctx: CtxDep, account: AccountDep) -> None:
        limiter: RateLimiter = request.app.state.limiter  # made by the lifespan, as the event hub is
        verdict = await limiter.take(bucket, account.id, per_minute(ctx))
        if not verdict.allowed:
            raise RateLimited(
                f"Too many {bucket} requests; retry in {verdict.retry_after_seconds} s.",
                retry_after=verdict.retry_after_seconds,
            )

    return dependency


GenerateRateLimit = Depends(_limited("generate", lambda c: c.settings.rate_limit_generate_per_minute))
UploadRateLimit = Depends(_limited("upload", lambda c: c.settings.rate_limit_upload_per_minute))
