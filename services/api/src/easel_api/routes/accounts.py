from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from easel_api.deps import AccountDep, AdminDep, CtxDep
from easel_api.schemas.requests import AccountCreate, CreditsChange
from easel_api.services import accounts
from easel_shared.web import PageDep, page

router = APIRouter(prefix="/v1")


@router.post("/admin/accounts", status_code=status.HTTP_201_CREATED)
def create_account(body: AccountCreate, ctx: CtxDep, _admin: AdminDep) -> dict[str, Any]:
    return accounts.create(ctx, body.name, body.credits)


@router.post("/admin/accounts/{account_id}/credits")
def change_credits(account_id: str, body: CreditsChange, ctx: CtxDep, _admin: AdminDep) -> dict[str, Any]:
    return accounts.change_credits(ctx, account_id, body.amount, body.reason)


@router.get("/account")
def get_account(ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return accounts.current(ctx, account.id)


@router.get("/account/ledger")
def get_ledger(ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    rows = accounts.ledger(ctx, account.id, p.limit, p.cursor)
    return page(rows, p.limit, accounts.ledger_view, lambda e: e.id)
