"""The assets library: an account's images that outlived their nodes.

Each asset owns its bytes under `assets/{account_id}/{asset_id}...` (see `asset_keys`), so every
operation here touches only the asset's own objects, never an image a node may still show.

In the public view, `image.id` is the asset id: the library's image *is* the asset's own copy of
the bytes, served by this service (`/v1/assets/{id}/content`), whereas the original image id
names bytes the api owns and may outlive or predate the asset independently.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal, cast

from sqlmodel import Session

from easel_assets.context import AppContext
from easel_shared import schemas
from easel_shared.clock import rfc3339, utcnow
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.models import Account, Asset, Image
from easel_shared.repositories.assets import assets_page, get_account_asset

log = logging.getLogger(__name__)

Variant = Literal["content", "download", "thumbnail"]


def _ext(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else "bin"


def asset_keys(account_id: str, asset_id: str, image: Image) -> tuple[str, str]:
    """Where an asset keeps its copy of `image` and its thumbnail. Deterministic, so a retried
    or duplicated retention writes the same objects instead of leaking new ones."""
    base = f"assets/{account_id}/{asset_id}"
    return f"{base}.{_ext(image.storage_key)}", f"{base}.thumb.{_ext(image.thumbnail_key)}"


# -- queries ---------------------------------------------------------------------------------- #


# -- views ------------------------------------------------------------------------------------ #


def asset_view(asset: Asset, base_url: str) -> dict[str, Any]:
    """The public asset (`easel_shared.schemas.Asset`), as JSON-ready data."""
    return schemas.Asset(
        id=asset.id,
        image=schemas.Image(
            id=asset.id,
            url=f"{base_url}/v1/assets/{asset.id}/content",
            thumbnail_url=f"{base_url}/v1/assets/{asset.id}/thumbnail",
            content_type=asset.content_type,
            width=asset.width,
            height=asset.height,
            size_bytes=asset.size_bytes,
            source=cast(schemas.ImageSource, asset.source),
            created_at=_ts(asset.image_created_at),
        ),
        origin=schemas.AssetOrigin(
            board_id=asset.origin_board_id,
            node_id=asset.origin_node_id,
            reason=cast(schemas.AssetReason, asset.origin_reason),
        ),
        created_at=_ts(asset.created_at),
    ).model_dump(mode="json")


def _ts(value: datetime) -> str:
    text = rfc3339(value)
    assert text is not None
    return text


# -- use cases -------------------------------------------------------------------------------- #


def _asset_or_404(session: Session, account: Account, asset_id: str) -> Asset:
    asset = get_account_asset(session, account.id, asset_id)
    if asset is None:
        raise errors.NotFound("Asset not found.")
    return asset


def list_assets(ctx: AppContext, account: Account, limit: int, cursor: str | None) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        rows = assets_page(session, account.id, limit, cursor)
    items = rows[:limit]
    next_cursor = items[-1].id if len(rows) > limit and items else None
    return {"items": [asset_view(a, ctx.base_url) for a in items], "next_cursor": next_cursor}


def get_asset(ctx: AppContext, account: Account, asset_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        return asset_view(_asset_or_404(session, account, asset_id), ctx.base_url)


def asset_url(ctx: AppContext, account: Account, asset_id: str, variant: Variant) -> str:
    """A short-lived link to the bytes; the stable URLs in the view redirect here."""
    with session_scope(ctx.engine) as session:
        asset = _asset_or_404(session, account, asset_id)
    key = asset.thumbnail_key if variant == "thumbnail" else asset.storage_key
    filename = f"{asset.id}.{_ext(asset.storage_key)}" if variant == "download" else None
    return ctx.store.presigned_url(key, expires_in=ctx.settings.presigned_url_ttl_seconds, download_filename=filename)


def delete_asset(ctx: AppContext, account: Account, asset_id: str) -> None:
    """Bytes first, then the row: if storage fails the asset stays listed and the DELETE can be
    retried, instead of a vanished row leaving orphaned bytes nobody can find again. Nothing
    else points at these objects (placing an asset copies them), so no node can break."""
    with session_scope(ctx.engine) as session:
        asset = _asset_or_404(session, account, asset_id)
    for key in (asset.storage_key, asset.thumbnail_key):
        ctx.store.delete(key)
    with session_scope(ctx.engine) as session:
        row = get_account_asset(session, account.id, asset_id)
        if row is not None:
            row.deleted_at = utcnow()
            session.add(row)
    log.info("asset %s deleted", asset_id)
