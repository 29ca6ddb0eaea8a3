from __future__ import annotations

from easel_api.context import AppContext
from easel_api.schemas.responses import Account, CreatedAccount
from easel_shared import scheduler
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.models import LedgerEntry
from easel_shared.repositories import accounts as repo


def create(ctx: AppContext, name: str, credits: int) -> CreatedAccount:
    with session_scope(ctx.engine) as session:
        account, api_key = repo.create_account(session, name, credits)
        return CreatedAccount(**Account.of(account, ctx.settings.account_max_running).model_dump(), api_key=api_key)


def change_credits(ctx: AppContext, account_id: str, amount: int, reason: str) -> Account:
    with session_scope(ctx.engine) as session:
        if repo.get(session, account_id) is None:
            raise errors.NotFound("Account not found.")
        try:
            account = repo.grant(session, account_id, amount, reason)
        except ValueError:
            raise errors.InsufficientCredits("Removing that many credits would make the balance negative.") from None
        view = Account.of(account, ctx.settings.account_max_running)
    # The cached row would show the old balance to anyone reading it; the next request re-reads.
    ctx.auth_cache.forget_account(account_id)
    return view


def current(ctx: AppContext, account_id: str) -> Account:
    with session_scope(ctx.engine) as session:
        account = repo.get(session, account_id)
        assert account is not None
        return Account.of(account, ctx.settings.account_max_running)


def ledger(ctx: AppContext, account_id: str, limit: int, cursor: str | None) -> list[LedgerEntry]:
    with session_scope(ctx.engine) as session:
        return repo.ledger_page(session, account_id, limit, cursor)


def change_scheduling(ctx: AppContext, account_id: str, max_running: int | None, weight: int | None,
                      set_max_running: bool) -> Account:
    """Set the account's limit (`set_max_running`: even to None, the default) and its weight."""
    with session_scope(ctx.engine) as session:
        account = repo.get(session, account_id)
        if account is None:
            raise errors.NotFound("Account not found.")
        if set_max_running:
            account.max_running = max_running
        if weight is not None:
            account.weight = weight
        session.add(account)
        # A raised limit (or weight) lets waiting work start now, not when a slot next frees.
        scheduler.wake(session, account.id, "limits")
        view = Account.of(account, ctx.settings.account_max_running)
    ctx.auth_cache.forget_account(account_id)
    return view
