"""The retention relay: turns `image.retain` outbox events into library assets.

When the api deletes an image node or a board (or the worker finishes a generation whose node is
gone), it writes an `image.retain` row (`easel_shared.messages.RetainImage`) into the outbox in
the *same* transaction as the change. This service's outbox relay thread (`easel_shared.relay`,
which also relays live events and dispatches left behind by any process) runs `RetentionRelay`
every `outbox_poll_seconds`: for each event it copies the image's bytes to asset-owned keys and
inserts the `Asset` row. It does no work right after other processes' commits: copying objects
is no job for a request thread, so an asset appears within one poll.

Because the outbox lives in the database, nothing is lost while a part is down: if the assets
service, Redis or the worker was unavailable at deletion time, the event simply waits in the
table and the asset appears on the first poll after this service is back. Redis is not used here
at all.

Delivery is at least once (a crash between copying and committing, a duplicated event, two
replicas), so handling is idempotent: the asset id comes from the event, an existing asset means
"already done", and storage keys are derived from the asset id, so a retry overwrites the same
objects instead of leaking new ones. With several replicas, PostgreSQL's `FOR UPDATE SKIP LOCKED`
keeps two relays off the same row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from easel_assets.context import AppContext
from easel_assets.services.library import asset_keys, asset_view
from easel_shared import thumbnails, webhooks
from easel_shared.db import session_scope
from easel_shared.messages import RetainImage
from easel_shared.models import Asset, Image, OutboxEvent
from easel_shared.relay import Written
from easel_shared.repositories.outbox import RETAIN_IMAGE, claim_batch, lock_event, mark_done, mark_failed
from easel_shared.storage import ObjectNotFound, StorageError

log = logging.getLogger(__name__)

BATCH_SIZE = 50

RETENTION_EVENTS = Counter(
    "easel_assets_retention_events_total",
    "image.retain events handled, by outcome",
    ["outcome"],  # created | duplicate | retry | dead_letter
)


class _Unrecoverable(Exception):
    """The event can never succeed (malformed payload, image or its bytes gone)."""


@dataclass(frozen=True)
class _Plan:
    asset_id: str
    account_id: str
    image: Image
    storage_key: str
    thumbnail_key: str
    board_id: str | None
    node_id: str | None
    reason: str
    thumbnail_pending: bool = False

    def asset(self) -> Asset:
        return Asset(
            id=self.asset_id,
            account_id=self.account_id,
            storage_key=self.storage_key,
            thumbnail_key=self.thumbnail_key,
            content_type=self.image.content_type,
            width=self.image.width,
            height=self.image.height,
            size_bytes=self.image.size_bytes,
            source=self.image.source,
            origin_board_id=self.board_id,
            origin_node_id=self.node_id,
            origin_reason=self.reason,
            image_created_at=self.image.created_at,
        )


def _plan(session: Session, event: OutboxEvent) -> _Plan | None:
    """What to copy and insert, or None when the asset already exists (a repeated event)."""
    try:
        message = RetainImage.model_validate(event.payload)
    except ValidationError:
        raise _Unrecoverable(f"malformed payload: {event.payload!r}") from None
    if session.get(Asset, message.asset_id) is not None:
        return None
    image = session.get(Image, message.image_id)
    if image is None or image.account_id != event.account_id:
        raise _Unrecoverable(f"image {message.image_id} not found")
    key, thumb = asset_keys(event.account_id, message.asset_id, image)
    return _Plan(
        asset_id=message.asset_id,
        account_id=event.account_id,
        image=image,
        storage_key=key,
        thumbnail_key=thumb,
        board_id=message.board_id or None,
        node_id=message.node_id or None,
        reason=message.reason,
        thumbnail_pending=thumbnails.is_pending(session, image.id),
    )


def _set_aside(session: Session, event: OutboxEvent, error: str) -> None:
    """Dead-letter: processed, with `last_error` kept for whoever investigates."""
    mark_failed(session, event, error)
    mark_done(session, event)
    RETENTION_EVENTS.labels("dead_letter").inc()
    log.error("retention event %s cannot be processed and was set aside: %s", event.id, error)


def _handle(ctx: AppContext, event_id: int) -> bool:
    """Process one event; True when it is settled (processed) by this call.

    Three short transactions rather than one long one: the copy talks to object storage, and
    holding a database transaction across that (on SQLite: the database's single write lock)
    would stall the api whenever storage is slow.
    """
    with session_scope(ctx.engine) as session:
        event = lock_event(session, event_id)
        if event is None or event.processed_at is not None:
            return False  # another relay has it, or already finished it
        try:
            plan = _plan(session, event)
        except _Unrecoverable as exc:
            _set_aside(session, event, str(exc))
            return True
        if plan is None:
            mark_done(session, event)
            RETENTION_EVENTS.labels("duplicate").inc()
            log.info("retention event %s: asset already exists", event_id)
            return True

    # Assets own their bytes: a server-side copy under asset keys, never a shared reference to
    # the node's image objects. Deleting an asset then removes its bytes for good without ever
    # breaking a node that shows the same image (placing an asset copies again, the other way),
    # and neither node images nor assets need reference counting. The price is storage for the
    # duplicate, which a server-side copy makes cheap in time and bandwidth.
    try:
        if plan.thumbnail_pending:  # an upload's, not stored yet: store it first
            thumbnails.ensure(ctx.store, plan.image, max_pixels=ctx.settings.max_image_pixels)
        ctx.store.copy(plan.image.storage_key, plan.storage_key)
        ctx.store.copy(plan.image.thumbnail_key, plan.thumbnail_key)
    except StorageError as exc:
        gone = isinstance(exc, ObjectNotFound)
        with session_scope(ctx.engine) as session:
            event = lock_event(session, event_id)
            if event is None or event.processed_at is not None:
                return False
            if gone:
                _set_aside(session, event, f"image bytes missing: {exc}")
                return True
            mark_failed(session, event, f"storage: {exc}")
        RETENTION_EVENTS.labels("retry").inc()
        log.warning("retention event %s: storage failed, will retry: %s", event_id, exc)
        return False

    with session_scope(ctx.engine) as session:
        event = lock_event(session, event_id)
        if event is None:
            return False  # another relay is finishing it; it writes the very same keys
        if event.processed_at is not None:
            existing = session.get(Asset, plan.asset_id)
            if existing is None or existing.deleted_at is not None:
                # Finished elsewhere and already deleted by its owner while we copied: our copy
                # would be bytes no asset points at.
                _delete_quietly(ctx, plan.storage_key, plan.thumbnail_key)
            return False
        if session.get(Asset, plan.asset_id) is None:
            asset = plan.asset()
            session.add(asset)
            webhooks.emit(session, plan.account_id, "asset.created", asset_view(asset, ctx.base_url))
            outcome = "created"
        else:
            outcome = "duplicate"
        mark_done(session, event)
    RETENTION_EVENTS.labels(outcome).inc()
    log.info("retention event %s: asset %s %s (%s)", event_id, plan.asset_id, outcome, plan.reason)
    return True


def _delete_quietly(ctx: AppContext, *keys: str) -> None:
    for key in keys:
        try:
            ctx.store.delete(key)
        except StorageError as exc:
            log.warning("could not remove orphaned asset object %s: %s", key, exc)


def _pass(ctx: AppContext, limit: int, stop: threading.Event | None) -> tuple[int, int]:
    with session_scope(ctx.engine) as session:
        # Discovery only: each event is then locked again, and worked on, in its own transactions.
        ids = [e.id for e in claim_batch(session, RETAIN_IMAGE, limit) if e.id is not None]
    settled = 0
    for event_id in ids:
        if stop is not None and stop.is_set():
            break
        try:
            settled += _handle(ctx, event_id)
        except Exception:
            # A database hiccup or a bug in one event must not stop the others.
            log.exception("retention event %s failed; it stays queued", event_id)
    return len(ids), settled


def process_pending(ctx: AppContext, *, limit: int = BATCH_SIZE, stop: threading.Event | None = None) -> int:
    """One pass over pending `image.retain` events; returns how many were settled."""
    return _pass(ctx, limit, stop)[1]


class RetentionRelay:
    """The `image.retain` topic's relay, run by the service's outbox relay thread."""

    topic = RETAIN_IMAGE

    def __init__(self, ctx: AppContext, stop: threading.Event | None = None) -> None:
        self.ctx = ctx
        self.stop = stop

    def relay_written(self, engine: Engine, rows: Sequence[Written]) -> None:
        """Nothing right after a commit: the next poll copies the bytes, off any request thread."""

    def relay_pending(self, engine: Engine) -> bool:
        claimed, settled = _pass(self.ctx, BATCH_SIZE, self.stop)
        return claimed == BATCH_SIZE and settled == claimed  # a full batch went through: more may wait
