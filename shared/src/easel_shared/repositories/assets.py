"""Library assets. A deleted asset is a tombstone: never returned, never listed."""

from __future__ import annotations

from sqlmodel import Session, col, select

from easel_shared.models import Asset
from easel_shared.repositories.paging import newest_first


def get_account_asset(session: Session, account_id: str, asset_id: str) -> Asset | None:
    asset = session.get(Asset, asset_id)
    if asset is None or asset.account_id != account_id or asset.deleted_at is not None:
        return None
    return asset


def assets_page(session: Session, account_id: str, limit: int, cursor: str | None) -> list[Asset]:
    """Newest first: asset ids are time-ordered (chosen when the node was deleted)."""
    query = select(Asset).where(Asset.account_id == account_id, col(Asset.deleted_at).is_(None))
    return newest_first(session, query, Asset.id, limit, cursor)
