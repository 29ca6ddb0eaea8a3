from __future__ import annotations

from easel_api.context import AppContext
from easel_api.schemas.responses import Account, CreatedAccount
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.models import LedgerEntry
from easel_shared.repositories import accounts as repo


def create(ctx: AppContext, name: str, credits: int) -> CreatedAccount:
    with session_scope(ctx.engine) as session:
        account, api_key = repo.create_account(session, name, credits)
        return CreatedAccount(**Account.of(account).model_dump(), api_key=api_key)


def change_credits(ctx: AppContext, account_id: str, amount: int, reason: str) -> Account:
    with session_scope(ctx.engine) as session:
        if repo.get(session, account_id) is None:
            raise errors.NotFound("Account not found.")
        try:
            account = repo.grant(session, account_id, amount, reason)
        except ValueError:
            raise errors.InsufficientCredits("Removing that many credits would make the balance negative.") from None
        view = Account.of(account)
    # The cached row would show the old balance to anyone reading it; the next request re-reads.
    ctx.auth_cache.forget_account(account_id)
    return view


def current(ctx: AppContext, account_id: str) -> Account:
    with session_scope(ctx.engine) as session:
        account = repo.get(session, account_id)
        assert account is not None
        return Account.of(account)


def ledger(ctx: AppContext, account_id: str, limit: int, cursor: str | None) -> list[LedgerEntry]:
    with session_scope(ctx.engine) as session:
        return repo.ledger_page(session, account_id, limit, cursor)
