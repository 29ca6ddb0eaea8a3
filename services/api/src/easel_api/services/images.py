"""Uploads, crop, and the short-lived URLs behind full screen and download."""

from __future__ import annotations

from typing import Any

from easel_api.arriving_decode import EarlyDecode
from easel_api.context import AppContext
from easel_api.services.common import image_node_or_404
from easel_shared import lifecycle, node_updates, thumbnails
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.domain.generation import upload_available
from easel_shared.images import discard, start_original, store_image, store_original
from easel_shared.imaging import CropRejected, ImageRejected, crop_image, inspect_with_thumbnail
from easel_shared.models import Account, Image
from easel_shared.node_updates import Change
from easel_shared.repositories import boards as repo


def upload(ctx: AppContext, account: Account, node_id: str, data: bytes,
           arriving: EarlyDecode | None = None) -> dict[str, Any]:
    """``arriving``: the decode that ran while the body arrived (its answer, when it has one, is
    the usual validation's; otherwise the bytes are validated here)."""
    with session_scope(ctx.engine) as session:
        node = image_node_or_404(session, account, node_id)
        if not upload_available(node.status, node.image_id is not None):
            raise errors.UploadNotAvailable()
    if not data:
        raise errors.ImageInvalid("The file is empty.")
    # The original's write starts now and overlaps the decode (refused bytes are deleted again).
    # Bytes go to storage before the row that points at them commits; a failed commit leaves
    # only an unreferenced object, never a node pointing at nothing.
    early = start_original(ctx.store, account.id, data)
    try:
        # One decode validates the upload and renders its thumbnail (an early decode renders it
        # while the transaction below runs).
        inspected = arriving.result() if arriving is not None else None
        info, thumbnail = inspected or inspect_with_thumbnail(data, max_pixels=ctx.settings.max_image_pixels)
    except BaseException as exc:
        if early is not None:
            discard(ctx.store, early)
        if not isinstance(exc, ImageRejected):
            raise
        if exc.code == "unsupported_format":
            raise errors.UnsupportedFormat(exc.message) from None
        raise errors.ImageInvalid(exc.message) from None
    image = store_original(ctx.store, account.id, data, info, "upload", early=early)
    # The thumbnail is stored after the answer (see `easel_shared.thumbnails`).
    thumbnail_pending = thumbnails.Pending(ctx.store, image, thumbnail, data, ctx.settings.max_image_pixels)
    canceled: list[str] = []
    try:
        with session_scope(ctx.engine) as session:
            repo.lock_board(session, node.board_id)
            node = image_node_or_404(session, account, node_id)  # a fresh session: read under the lock
            if not upload_available(node.status, node.image_id is not None):
                raise errors.UploadNotAvailable()
            session.add(image)
            # "Uploading while the node is generating cancels that generation; the upload stays."
            replaced = lifecycle.cancel_active(session, node, base_url=ctx.base_url,
                                               error_code="replaced_by_upload",
                                               error_message="An upload replaced this generation.")
            if replaced:
                canceled.append(replaced)
            node.image_id = image.id
            node.status = "ready"
            node.active_generation_id = None
            node.error_code = node.error_message = None
            repo.touch(node)
            session.add(node)
            thumbnail_pending.mark(session)
            view = node_updates.stage(session, node.board_id, ctx.base_url, Change.state_of(node.id))[node.id]
    except BaseException:
        thumbnail_pending.drop()
        raise
    thumbnail_pending.store_after_commit(ctx.engine)
    for gen_id in canceled:
        lifecycle.signal_cancel(ctx.redis, gen_id)
    return view


def crop(ctx: AppContext, account: Account, node_id: str, x: int, y: int, width: int, height: int) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        node = image_node_or_404(session, account, node_id)
        if node.status != "ready" or not node.image_id:
            raise errors.NoImage("Crop is available when the node holds an image.")
        current = repo.get_image(session, node.image_id)
        assert current is not None
    try:
        data, info = crop_image(ctx.store.get(current.storage_key), x=x, y=y, width=width, height=height)
    except CropRejected as exc:
        raise errors.InvalidCrop(exc.message) from None
    image = store_image(ctx.store, account.id, data, info, "crop")
    with session_scope(ctx.engine) as session:
        repo.lock_board(session, node.board_id)
        node = image_node_or_404(session, account, node_id)  # a fresh session: read under the lock
        if node.image_id != current.id or node.status != "ready":
            raise errors.NoImage("The node's image changed while cropping; try again.")
        session.add(image)
        node.image_id = image.id
        repo.touch(node)
        session.add(node)
        # A new image, same status: the node and the nodes showing its thumbnail change.
        return node_updates.stage(session, node.board_id, ctx.base_url,
                                  Change(rows=(node.id,), shown=(node.id,)))[node.id]


def _download_name(image: Image) -> str:
    ext = image.storage_key.rsplit(".", 1)[-1]
    return f"{image.id}.{ext}"


def node_image_url(ctx: AppContext, account: Account, node_id: str, *, download: bool) -> str:
    with session_scope(ctx.engine) as session:
        node = image_node_or_404(session, account, node_id)
        if not node.image_id or node.status != "ready":
            raise errors.NoImage()
        image = repo.get_image(session, node.image_id)
        assert image is not None
    return ctx.store.presigned_url(
        image.storage_key,
        expires_in=ctx.settings.presigned_url_ttl_seconds,
        download_filename=_download_name(image) if download else None,
    )


def image_url(ctx: AppContext, account: Account, image_id: str, *, thumbnail: bool) -> str:
    with session_scope(ctx.engine) as session:
        if thumbnail:
            found = repo.get_account_image_and_thumbnail_state(session, account.id, image_id)
            image, pending = found if found is not None else (None, False)
        else:
            image, pending = repo.get_account_image(session, account.id, image_id), False
        if image is None:
            raise errors.NotFound("Image not found.")
    if pending:
        thumbnails.ensure(ctx.store, image, max_pixels=ctx.settings.max_image_pixels)
    key = image.thumbnail_key if thumbnail else image.storage_key
    return ctx.store.presigned_url(key, expires_in=ctx.settings.presigned_url_ttl_seconds)
