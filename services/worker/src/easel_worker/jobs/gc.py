"""The orphan collector: removes node images nothing refers to any more.

An image replaced by an upload, a crop or a new generation (or left by a deleted node once the
assets service has copied it) keeps its row and its two objects (`images/...`, original and
thumbnail) until this job removes them. Two kinds of leftovers:

- rows: images created more than ORPHAN_GRACE_SECONDS ago that nothing refers to now
  (`easel_shared.repositories.images` says what refers to an image and why the check is safe).
  When an image stopped being referenced is not recorded, so the grace period counts from its
  creation; a young image is never a candidate, whatever happened to it. Each batch deletes its
  rows in one conditional statement and commits; only then are the objects deleted, so a
  failure in between leaves objects without a row, never a row without its bytes.
- objects: keys under `images/` last written more than ORPHAN_GRACE_SECONDS ago that no row
  owns. Bytes are stored before the row that names them commits (seconds apart), so a
  worker that died in between, a failed commit, or a collector that stopped after deleting rows
  leaves such objects; the grace period is what keeps this from touching an upload whose row is
  about to commit.

Assets own copies under `assets/...`: nothing here lists or deletes those. Every step is safe to
run on several workers at once (a row is deleted by one collector only; deleting an object twice
is harmless); `collect_if_due` only saves the fleet from repeating the same work each interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice

from easel_shared.clock import as_utc, utcnow
from easel_shared.db import session_scope
from easel_shared.repositories import images as images_repo
from easel_worker.metrics import IMAGES_COLLECTED
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)

IMAGE_PREFIX = "images/"
ROW_BATCH = 200
MAX_ROW_BATCHES = 50  # per run; the next run goes on
OBJECT_BATCH = 500
LEASE_KEY = "easel:gc:lease"


def collect_once(rt: Runtime, now: datetime | None = None) -> dict[str, int]:
    """One pass: unreferenced image rows (with their objects), then objects with no row."""
    cutoff = as_utc(now or utcnow()) - timedelta(seconds=rt.settings.orphan_grace_seconds)
    counts = {"images": _collect_rows(rt, cutoff), "objects": _collect_objects(rt, cutoff)}
    if any(counts.values()):
        log.info("orphan collection: %s", counts)
    return counts


def collect_if_due(rt: Runtime) -> dict[str, int] | None:
    """The periodic entry: runs `collect_once` unless another worker did within the interval.
    Without Redis it runs anyway: collecting twice costs work, never correctness."""
    ttl = max(1, int(rt.settings.orphan_sweep_interval_seconds))
    try:
        due = bool(rt.redis.set(LEASE_KEY, "1", nx=True, ex=ttl))
    except Exception:
        due = True
    return collect_once(rt) if due else None


def _collect_rows(rt: Runtime, cutoff: datetime) -> int:
    collected = 0
    for _ in range(MAX_ROW_BATCHES):
        with session_scope(rt.engine) as session:
            candidates = images_repo.find_unreferenced(session, cutoff, ROW_BATCH)
            gone = images_repo.delete_unreferenced(session, candidates, cutoff)
        # Committed: no row can point at these images any more, so their bytes may go. A storage
        # error ends the run; what it leaves has no row, and a later object pass removes it.
        IMAGES_COLLECTED.labels("image").inc(len(gone))
        collected += len(gone)
        for image in gone:
            _delete_object(rt, image.storage_key)
            _delete_object(rt, image.thumbnail_key)
        if len(candidates) < ROW_BATCH:
            break
    return collected


def _collect_objects(rt: Runtime, cutoff: datetime) -> int:
    removed = 0
    old_keys = (item.key for item in rt.store.list_keys(IMAGE_PREFIX) if item.last_modified < cutoff)
    for keys in _chunks(old_keys, OBJECT_BATCH):
        with session_scope(rt.engine) as session:
            owned = images_repo.keys_of(session, sorted({_image_id(key) for key in keys}))
        for key in keys:
            if key not in owned and _delete_object(rt, key):
                IMAGES_COLLECTED.labels("object").inc()
                removed += 1
    return removed


def _delete_object(rt: Runtime, key: str) -> bool:
    if not key.startswith(IMAGE_PREFIX):
        log.warning("not deleting %r: only keys under %s belong to node images", key, IMAGE_PREFIX)
        return False
    try:
        rt.store.delete(key)
    except ValueError:  # a key some other tool wrote, which Easel's key rules refuse
        log.warning("not deleting %r: not a valid object key", key)
        return False
    return True


def _image_id(key: str) -> str:
    """`images/<account>/<image id>.<ext>` and `images/<account>/<image id>.thumb.<ext>`."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
