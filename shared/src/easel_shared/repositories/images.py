"""Images nothing refers to any more: finding them, and deleting their rows safely.

What keeps an image (its `images` row and its `images/...` objects) alive:

- a node showing it (`nodes.image_id`);
- a generation that produced it (`generations.image_id`) or was given it as a reference
  (`generations.reference_image_ids`), whatever that generation's status. A queued or running
  generation still reads its references; a finished one is history, and the API keeps naming its
  ids (`GET /v1/generations/{id}`, a node's history) and serving them
  (`/v1/images/{id}/content`), so they must not turn into dangling ids;
- an `image.retain` outbox event not processed yet: the assets service has still to copy it.

Why one conditional DELETE is safe beside writers and other collectors: an existing image only
ever gains a referrer while another referrer still holds it, in one transaction under the board
lock (a generation accepted with an upstream node's current image; a node deletion writing the
retention event for the image it showed), and a new image is inserted in the transaction that
makes something refer to it. So at every commit point an image that will be referenced again is
referenced already, and the DELETE, whose checks are evaluated on the statement's one snapshot
(PostgreSQL) or under the database's write lock (SQLite), never sees a gap. Two collectors
never delete the same row: each locks the candidates it picked (skipping the other's), and
even without that a second DELETE of a row would wait for the first's lock and then find
nothing, so each row is deleted, and reported by RETURNING, exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, delete, exists, func, true
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from easel_shared.models import Generation, Image, Node, OutboxEvent
from easel_shared.repositories.outbox import RETAIN_IMAGE


class CollectedImage(NamedTuple):
    id: str
    storage_key: str
    thumbnail_key: str


def _is_unreferenced(dialect: str) -> list[ColumnElement[bool]]:
    """Conditions on `images` (correlated): nothing listed in the module docstring names it."""
    image_id = col(Image.id)
    # Each element of the JSON list as a row with a `value` column; both functions may read a
    # column of a table joined before them (implicitly lateral).
    elements = func.json_each if dialect == "sqlite" else func.json_array_elements_text
    refs = elements(col(Generation.reference_image_ids)).table_valued("value").alias("ref")
    as_reference = (
        core_select(refs.c.value)
        .select_from(Generation)
        .join(refs, true())
        # References never cross accounts: this keeps the scan to one account's generations.
        .where(col(Generation.account_id) == col(Image.account_id), refs.c.value == image_id)
    )
    pending_retention = exists().where(
        col(OutboxEvent.topic) == RETAIN_IMAGE,
        col(OutboxEvent.processed_at).is_(None),
        col(OutboxEvent.payload)["image_id"].as_string() == image_id,
    )
    return [
        ~exists().where(col(Node.image_id) == image_id),
        ~exists().where(col(Generation.image_id) == image_id),
        ~as_reference.exists(),
        ~pending_retention,
    ]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def find_unreferenced(session: Session, created_before: datetime, limit: int) -> list[str]:
    """Ids of up to `limit` images created before `created_before` that nothing refers to now,
    locked for this transaction. On PostgreSQL rows another collector holds are skipped
    (`FOR UPDATE SKIP LOCKED`), so concurrent collectors take disjoint batches and never wait
    on, or deadlock with, each other; SQLite runs one write transaction at a time anyway. The
    lock keeps other collectors off, not writers: :func:`delete_unreferenced` checks again."""
    query = (
        select(Image.id)
        .where(col(Image.created_at) < created_before, *_is_unreferenced(_dialect(session)))
        .limit(limit)
    )
    if _dialect(session) != "sqlite":
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query))


def delete_unreferenced(session: Session, image_ids: Sequence[str], created_before: datetime) -> list[CollectedImage]:
    """Delete those of `image_ids` that are still unreferenced and older than `created_before`,
    in one statement; the rows this call deleted (another collector's are not among them).
    Delete their objects only after this transaction commits."""
    if not image_ids:
        return []
    result = session.execute(
        delete(Image)
        .where(col(Image.id).in_(list(image_ids)), col(Image.created_at) < created_before,
               *_is_unreferenced(_dialect(session)))
        .returning(col(Image.id), col(Image.storage_key), col(Image.thumbnail_key))
    )
    return [CollectedImage(image_id, key, thumb) for image_id, key, thumb in result]


def keys_of(session: Session, image_ids: Sequence[str]) -> set[str]:
    """The object keys (original and thumbnail) the rows of `image_ids` own."""
    if not image_ids:
        return set()
    rows = session.exec(
        select(Image.storage_key, Image.thumbnail_key).where(col(Image.id).in_(list(image_ids)))
    )
    return {key for pair in rows for key in pair}
