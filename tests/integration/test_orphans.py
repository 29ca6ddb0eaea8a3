"""The orphan collector on the real stack: images nothing refers to any more lose their row and
both objects once older than the grace period; anything still named (a node, a generation,
a pending retention event) is kept, and so are the library's own copies.

Time is moved, not waited for: a test sets its images' `created_at` back to a fixed moment in
the past and runs `collect_once` with `now` just before or just after that moment plus the grace
period. Only images moved that far back can be candidates, so images other tests made never
change what a test sees. Objects' ages come from the store's own listing, so the test of
row-less objects runs at their real age plus the grace period (and so also collects whatever
earlier tests left unreferenced, as the worker would).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from easel_shared.db import session_scope
from easel_shared.models import Image, OutboxEvent
from easel_shared.repositories.outbox import RETAIN_IMAGE
from easel_shared.storage import ObjectStore
from tests.fixtures.generation import (
    STUDIO,
    accepted,
    connect,
    image_node,
    upload,
    wait_final,
)
from tests.fixtures.stack import Account, Stack, wait_for

pytestmark = pytest.mark.integration

GRACE = timedelta(seconds=60)
PAST = datetime(2001, 1, 1, tzinfo=UTC)
JUST_BEFORE = PAST + GRACE - timedelta(seconds=1)  # as `now`: images made at PAST are still young
JUST_AFTER = PAST + GRACE + timedelta(seconds=1)  # as `now`: they are past the grace period


# -- helpers ----------------------------------------------------------------------------------- #


class RecordingStore:
    """The stack's store, counting deletes per key (several collectors share one)."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        self._inner.delete(key)
        with self._lock:
            self.deleted.append(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def collector(store: ObjectStore | RecordingStore | None = None, grace: timedelta = GRACE) -> Any:
    """A runtime like the worker's, with a 60 s grace period (and optionally another store)."""
    from easel_worker import runtime

    rt = runtime.get()
    settings = rt.settings.model_copy(update={"orphan_grace_seconds": grace.total_seconds()})
    return dataclasses.replace(rt, settings=settings, store=store or rt.store)


def collect(now: datetime, store: ObjectStore | RecordingStore | None = None) -> dict[str, int]:
    from easel_worker.jobs.gc import collect_once

    return collect_once(collector(store), now=now)


def image_id(node: dict[str, Any]) -> str:
    assert node["image"] is not None, node
    value: str = node["image"]["id"]
    return value


def made_at(stack: Stack, when: datetime, *image_ids: str) -> None:
    with session_scope(stack.engine) as session:
        session.execute(update(Image).where(col(Image.id).in_(image_ids)).values(created_at=when))


def row(stack: Stack, image_id: str) -> Image | None:
    with session_scope(stack.engine) as session:
        return session.get(Image, image_id)


def keys(stack: Stack, image_id: str) -> tuple[str, str]:
    image = row(stack, image_id)
    assert image is not None, image_id
    return image.storage_key, image.thumbnail_key


def stored(stack: Stack, *object_keys: str) -> list[bool]:
    return [stack.store.exists(key) for key in object_keys]


def served(client: httpx.Client, image_id: str) -> bool:
    r = client.get(f"/v1/images/{image_id}/content")
    if r.status_code == 404:
        return False
    assert r.status_code == 302, r.text
    return httpx.get(r.headers["location"], timeout=30).status_code == 200


def crop(c: httpx.Client, node_id: str, width: int = 32, height: int = 24) -> dict[str, Any]:
    r = c.post(f"/v1/nodes/{node_id}/image/crop", json={"x": 0, "y": 0, "width": width, "height": height})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def prompted_node(c: httpx.Client, board_id: str) -> dict[str, Any]:
    return image_node(c, board_id, prompt="a lighthouse at dusk")


# -- tests ------------------------------------------------------------------------------------- #


def test_an_image_replaced_by_an_upload_is_collected_after_the_grace_period(
    stack: Stack, account: Account, board: dict[str, Any], paused_worker: None
) -> None:
    c = account.client
    node = prompted_node(c, board["id"])
    old = image_id(upload(c, node["id"], color=(200, 10, 10)))
    # A node that holds an image takes an upload while it generates (the upload wins).
    assert accepted(c, node["id"])["status"] == "queued"
    new = image_id(upload(c, node["id"], color=(10, 200, 10)))
    old_keys = keys(stack, old)
    assert stored(stack, *old_keys) == [True, True]
    made_at(stack, PAST, old, new)

    collect(now=JUST_BEFORE)
    assert row(stack, old) is not None and stored(stack, *old_keys) == [True, True]

    counts = collect(now=JUST_AFTER)
    assert counts["images"] >= 1
    assert row(stack, old) is None
    assert stored(stack, *old_keys) == [False, False]
    assert not served(c, old)
    # The node's current image is untouched.
    assert stored(stack, *keys(stack, new)) == [True, True] and served(c, new)


def test_a_nodes_current_image_is_never_collected_and_a_cropped_away_one_is(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    c = account.client
    node = image_node(c, board["id"])
    original = image_id(upload(c, node["id"]))
    current = image_id(crop(c, node["id"]))
    original_keys, current_keys = keys(stack, original), keys(stack, current)
    made_at(stack, PAST, original, current)

    collect(now=JUST_AFTER)
    collect(now=JUST_AFTER + timedelta(days=3650))

    assert row(stack, original) is None and stored(stack, *original_keys) == [False, False]
    assert row(stack, current) is not None and stored(stack, *current_keys) == [True, True]
    r = c.get(f"/v1/nodes/{node['id']}/image/download")
    assert r.status_code == 302 and httpx.get(r.headers["location"], timeout=30).status_code == 200


def test_the_reference_of_a_queued_generation_is_never_collected(
    stack: Stack, account: Account, board: dict[str, Any], paused_worker: None
) -> None:
    c = account.client
    source = image_node(c, board["id"])
    reference = image_id(upload(c, source["id"]))
    target = prompted_node(c, board["id"])
    connect(c, board["id"], source, target)
    gen = accepted(c, target["id"], model_id=STUDIO)
    assert gen["status"] == "queued" and gen["reference_image_ids"] == [reference]
    # The source node moves on: only the queued generation still names the reference.
    replacement = image_id(crop(c, source["id"]))
    made_at(stack, PAST, reference, replacement)

    collect(now=JUST_AFTER)

    assert row(stack, reference) is not None
    assert stored(stack, *keys(stack, reference)) == [True, True]


def test_history_keeps_the_images_it_names(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    """Finished generations keep their output and their references: the API still returns those
    ids (generation, history) and serves them."""
    c = account.client
    source = image_node(c, board["id"])
    reference = image_id(upload(c, source["id"]))
    target = prompted_node(c, board["id"])
    connect(c, board["id"], source, target)
    first = wait_final(c, accepted(c, target["id"], model_id=STUDIO)["id"])
    second = wait_final(c, accepted(c, target["id"], model_id=STUDIO)["id"])
    assert first["status"] == second["status"] == "succeeded"
    assert first["reference_image_ids"] == [reference]
    crop(c, source["id"])  # the reference is on no node any more
    made_at(stack, PAST, reference, first["image_id"], second["image_id"])

    collect(now=JUST_AFTER)

    for kept in (reference, first["image_id"], second["image_id"]):
        assert row(stack, kept) is not None, kept
        assert stored(stack, *keys(stack, kept)) == [True, True], kept
        assert served(c, kept), kept


def test_generated_images_that_replaced_others_leave_the_old_ones_collectable(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    c = account.client
    node = prompted_node(c, board["id"])
    uploaded = image_id(upload(c, node["id"]))
    uploaded_keys = keys(stack, uploaded)
    gen = wait_final(c, accepted(c, node["id"])["id"])
    assert gen["status"] == "succeeded"
    generated = gen["image_id"]
    made_at(stack, PAST, uploaded, generated)

    collect(now=JUST_AFTER)

    assert row(stack, uploaded) is None and stored(stack, *uploaded_keys) == [False, False]
    assert row(stack, generated) is not None and stored(stack, *keys(stack, generated)) == [True, True]


def test_an_image_whose_retention_event_is_pending_is_kept_until_processed(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    assert stack.stop_assets is not None and stack.start_assets is not None and stack.assets_url is not None
    c = account.client
    node = image_node(c, board["id"])
    image = image_id(upload(c, node["id"]))
    image_keys = keys(stack, image)
    made_at(stack, PAST, image)

    stack.stop_assets()  # nobody processes the retention event meanwhile
    try:
        r = c.delete(f"/v1/nodes/{node['id']}")
        assert r.status_code == 200, r.text
        asset_id = r.json()["asset_id"]
        collect(now=JUST_AFTER)
        assert row(stack, image) is not None and stored(stack, *image_keys) == [True, True]
    finally:
        stack.start_assets()

    def processed() -> bool:
        with session_scope(stack.engine) as session:
            events = [e for e in session.exec(select(OutboxEvent).where(OutboxEvent.topic == RETAIN_IMAGE))
                      if e.payload.get("asset_id") == asset_id]
        return bool(events) and all(e.processed_at is not None for e in events)

    wait_for(processed, what="the retention event to be processed")
    lib = stack.client(account.api_key, base_url=stack.assets_url)
    assert lib.get(f"/v1/assets/{asset_id}").json()["origin"]["reason"] == "node_deleted"

    collect(now=JUST_AFTER)

    assert row(stack, image) is None and stored(stack, *image_keys) == [False, False]
    # The library's copy is its own and stays.
    r = lib.get(f"/v1/assets/{asset_id}/content")
    assert r.status_code == 302 and httpx.get(r.headers["location"], timeout=30).status_code == 200


def test_objects_without_a_row_are_removed_once_older_than_the_grace_period(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    c = account.client
    node = image_node(c, board["id"])
    kept = image_id(upload(c, node["id"]))
    # What a worker that died before its commit leaves: bytes and a thumbnail, no row.
    dead = f"images/{account.id}/img_0000000000000000dead"
    left = [f"{dead}.png", f"{dead}.thumb.webp"]
    library_copy = f"assets/{account.id}/ast_0000000000000000dead.png"  # no row either: not ours
    for key in [*left, library_copy]:
        stack.store.put(key, b"bytes", "image/png")
    written = max(item.last_modified for item in stack.store.list_keys(dead))

    collect(now=written + GRACE - timedelta(seconds=1))
    assert stored(stack, *left) == [True, True]

    counts = collect(now=written + GRACE + timedelta(seconds=1))
    assert counts["objects"] >= 2
    assert stored(stack, *left) == [False, False]
    assert stored(stack, library_copy) == [True]
    assert stored(stack, *keys(stack, kept)) == [True, True] and served(c, kept)


def test_two_collectors_at_once_delete_each_image_once(
    stack: Stack, account: Account, board: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from easel_shared.repositories import images as images_repo

    c = account.client
    node = image_node(c, board["id"])
    images = [image_id(upload(c, node["id"]))]
    images += [image_id(crop(c, node["id"], width=60 - 4 * i, height=44 - 4 * i)) for i in range(6)]
    orphans, current = images[:-1], images[-1]
    orphan_keys = {key for image in orphans for key in keys(stack, image)}
    # Further back than any other test's images, so these six are the only candidates.
    long_ago = datetime(1990, 1, 1, tzinfo=UTC)
    made_at(stack, long_ago, *images)
    found: list[list[str]] = []
    if stack.db_kind == "postgresql":
        # Both collectors look for candidates before either deletes anything. (SQLite runs one
        # write transaction at a time, so there they simply take turns.)
        both_looked = threading.Barrier(2, timeout=30)
        find = images_repo.find_unreferenced
        first_call = threading.local()

        def find_then_wait(*args: Any, **kwargs: Any) -> list[str]:
            ids = find(*args, **kwargs)
            if not getattr(first_call, "done", False):
                first_call.done = True
                found.append(sorted(ids))
                both_looked.wait()
            return ids

        monkeypatch.setattr(images_repo, "find_unreferenced", find_then_wait)
    store = RecordingStore(stack.store)
    start = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(30)
            results.append(collect(now=long_ago + GRACE + timedelta(seconds=1), store=store))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert not errors, errors
    if stack.db_kind == "postgresql":
        # Each holds the candidates it found; the other skipped them rather than racing it: no
        # image is in both lists, and together they are every orphan. (How they split depends on
        # timing: the second may lock rows the first had not reached yet.)
        assert len(found) == 2 and not set(found[0]) & set(found[1])
        assert sorted(found[0] + found[1]) == sorted(orphans)
    assert sum(r["images"] for r in results) == len(orphans)
    assert sorted(store.deleted) == sorted(orphan_keys)  # every object of every orphan, once
    assert all(row(stack, image) is None for image in orphans)
    assert stored(stack, *orphan_keys) == [False] * len(orphan_keys)
    assert row(stack, current) is not None and served(c, current)


def test_the_periodic_entry_runs_once_per_interval_across_workers(stack: Stack) -> None:
    from easel_worker.jobs.gc import LEASE_KEY, collect_if_due

    rt = collector(grace=timedelta(days=36500))  # the runs themselves find nothing to do
    rt.redis.delete(LEASE_KEY)
    assert collect_if_due(rt) is not None
    assert collect_if_due(rt) is None  # another worker's turn already taken this interval
    rt.redis.delete(LEASE_KEY)
