from __future__ import annotations

from typing import Any

from easel_api.context import AppContext
from easel_shared.clock import rfc3339
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.models import Account, LedgerEntry
from easel_shared.repositories import accounts as repo


def account_view(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "credits": account.credits,
        "reserved_credits": account.reserved_credits,
        "created_at": rfc3339(account.created_at),
    }


def ledger_view(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "delta": entry.delta,
        "kind": entry.kind,
        "generation_id": entry.generation_id,
        "reason": entry.reason,
        "balance_after": entry.balance_after,
        "reserved_after": entry.reserved_after,
        "created_at": rfc3339(entry.created_at),
    }


def create(ctx: AppContext, name: str, credits: int) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        account, api_key = repo.create_account(session, name, credits)
        return {**account_view(account), "api_key": api_key}


def change_credits(ctx: AppContext, account_id: str, amount: int, reason: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        if repo.get(session, account_id) is None:
            raise errors.NotFound("Account not found.")
        try:
            account = repo.grant(session, account_id, amount, reason)
        except ValueError:
            raise errors.InsufficientCredits("Removing that many credits would make the balance negative.") from None
        view = account_view(account)
    # The cached row would show the old balance to anyone reading it; the next request re-reads.
    ctx.auth_cache.forget_account(account_id)
    return view


def current(ctx: AppContext, account_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        account = repo.get(session, account_id)
        assert account is not None
        return account_view(account)


def ledger(ctx: AppContext, account_id: str, limit: int, cursor: str | None) -> list[LedgerEntry]:
    with session_scope(ctx.engine) as session:
        return repo.ledger_page(session, account_id, limit, cursor)
