from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from easel_api.deps import AccountDep, AdminDep, CtxDep
from easel_api.schemas.requests import AccountCreate, AccountScheduling, CreditsChange
from easel_api.schemas.responses import Account, CreatedAccount, LedgerEntry, LedgerPage
from easel_api.services import accounts
from easel_shared.schemas import error_responses
from easel_shared.web import PageDep, page

router = APIRouter(prefix="/v1")


@router.post("/admin/accounts", status_code=status.HTTP_201_CREATED, response_model=CreatedAccount,
             responses=error_responses(401, 413, 422))
def create_account(body: AccountCreate, ctx: CtxDep, _admin: AdminDep) -> CreatedAccount:
    return accounts.create(ctx, body.name, body.credits)


@router.post("/admin/accounts/{account_id}/credits", response_model=Account,
             responses=error_responses(401, 402, 404, 413, 422))
def change_credits(account_id: str, body: CreditsChange, ctx: CtxDep, _admin: AdminDep) -> Account:
    return accounts.change_credits(ctx, account_id, body.amount, body.reason)


@router.patch("/admin/accounts/{account_id}", response_model=Account,
              responses=error_responses(401, 404, 413, 422))
def change_scheduling(account_id: str, body: AccountScheduling, ctx: CtxDep, _admin: AdminDep) -> Account:
    """The account's scheduling: `max_running` (null: the deployment's default) and `weight`."""
    return accounts.change_scheduling(ctx, account_id, body.max_running,
                                      body.weight if "weight" in body.model_fields_set else None,
                                      "max_running" in body.model_fields_set)


@router.get("/account", response_model=Account, responses=error_responses(401, 422))
def get_account(ctx: CtxDep, account: AccountDep) -> Account:
    return accounts.current(ctx, account.id)


@router.get("/account/ledger", response_model=LedgerPage, responses=error_responses(401, 422))
def get_ledger(ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    rows = accounts.ledger(ctx, account.id, p.limit, p.cursor)
    return page(rows, p.limit, LedgerEntry.of, lambda e: e.id)
