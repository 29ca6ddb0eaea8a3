"""The api's half of "an image on a deleted node is never lost": the deletion and a retention
event commit together (transactional outbox); the assets service turns the event into an asset.
The asset id is chosen here so the delete response can name it before the asset exists."""

from __future__ import annotations

from sqlmodel import Session

from easel_api.context import AppContext
from easel_shared.domain import errors
from easel_shared.ids import new_id
from easel_shared.messages import RetainImage
from easel_shared.models import Account, Image, Node
from easel_shared.repositories import outbox
from easel_shared.repositories.assets import get_account_asset


def retain(session: Session, node: Node, *, reason: str) -> str:
    assert node.image_id is not None
    asset_id = new_id("ast")
    outbox.enqueue(session, RetainImage(asset_id=asset_id, image_id=node.image_id, board_id=node.board_id,
                                        node_id=node.id, reason=reason), node.account_id)
    return asset_id


def place_asset(ctx: AppContext, session: Session, account: Account, asset_id: str) -> Image:
    """A library asset becomes a new node image. The node gets its own copy of the bytes, so
    deleting the asset later never breaks the node (and the asset stays in the library)."""
    asset = get_account_asset(session, account.id, asset_id)
    if asset is None:
        raise errors.NotFound("Asset not found.")
    image_id = new_id("img")
    ext = asset.storage_key.rsplit(".", 1)[-1]
    key = f"images/{account.id}/{image_id}.{ext}"
    thumb = f"images/{account.id}/{image_id}.thumb.{asset.thumbnail_key.rsplit('.', 1)[-1]}"
    ctx.store.copy(asset.storage_key, key)
    ctx.store.copy(asset.thumbnail_key, thumb)
    image = Image(
        id=image_id,
        account_id=account.id,
        storage_key=key,
        thumbnail_key=thumb,
        content_type=asset.content_type,
        width=asset.width,
        height=asset.height,
        size_bytes=asset.size_bytes,
        source="asset",
    )
    session.add(image)
    return image
