"""`/v1/assets`: the account's library of images kept from deleted nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from easel_assets.deps import AccountDep, CtxDep
from easel_assets.services import library
from easel_shared.web import PageDep

router = APIRouter(prefix="/v1/assets", tags=["assets"])


@router.get("")
def list_assets(ctx: CtxDep, account: AccountDep, page: PageDep) -> dict[str, Any]:
    return library.list_assets(ctx, account, page.limit, page.cursor)


@router.get("/{asset_id}")
def get_asset(asset_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return library.get_asset(ctx, account, asset_id)


@router.get("/{asset_id}/content", status_code=302, response_class=RedirectResponse)
def asset_content(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "content"), status_code=302)


@router.get("/{asset_id}/download", status_code=302, response_class=RedirectResponse)
def asset_download(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "download"), status_code=302)


@router.get("/{asset_id}/thumbnail", status_code=302, response_class=RedirectResponse)
def asset_thumbnail(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "thumbnail"), status_code=302)


@router.delete("/{asset_id}", status_code=204, response_class=Response)
def delete_asset(asset_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    library.delete_asset(ctx, account, asset_id)
    return Response(status_code=204)
