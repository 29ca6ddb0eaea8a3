"""`/v1/assets`: the account's library of images kept from deleted nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from easel_assets.deps import AccountDep, CtxDep
from easel_assets.services import library
from easel_shared.schemas import Asset, AssetPage, error_responses, redirect_responses
from easel_shared.web import PageDep

router = APIRouter(prefix="/v1/assets", tags=["assets"])


@router.get("", response_model=AssetPage, responses=error_responses(401, 422))
def list_assets(ctx: CtxDep, account: AccountDep, page: PageDep) -> dict[str, Any]:
    return library.list_assets(ctx, account, page.limit, page.cursor)


@router.get("/{asset_id}", response_model=Asset, responses=error_responses(401, 404, 422))
def get_asset(asset_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return library.get_asset(ctx, account, asset_id)


@router.get("/{asset_id}/content", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the asset's image", 401, 404, 422))
def asset_content(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "content"), status_code=302)


@router.get("/{asset_id}/download", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the asset's image, as an attachment", 401, 404, 422))
def asset_download(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "download"), status_code=302)


@router.get("/{asset_id}/thumbnail", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the asset's thumbnail", 401, 404, 422))
def asset_thumbnail(asset_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(library.asset_url(ctx, account, asset_id, "thumbnail"), status_code=302)


@router.delete("/{asset_id}", status_code=204, response_class=Response,
               responses=error_responses(401, 404, 422, 503))
def delete_asset(asset_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    library.delete_asset(ctx, account, asset_id)
    return Response(status_code=204)
