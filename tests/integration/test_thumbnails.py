"""An upload's thumbnail is stored after the upload answers (`easel_shared.thumbnails`), and
nothing that reads it ever finds it missing: the route and the assets library store a pending
one first, and an api process's outbox relay stores one whose upload's process died."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from PIL import Image
from sqlmodel import col, select

from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.imaging import inspect_with_thumbnail
from easel_shared.messages import StoreThumbnail
from easel_shared.models import Image as ImageRow
from easel_shared.models import OutboxEvent
from tests.fixtures.stack import Account, Stack, wait_for
from tests.integration.test_assets import delete_node, follow, library, wait_asset

pytestmark = pytest.mark.integration


def picture() -> bytes:
    """A 900x600 PNG of noise: its thumbnail is a real render, not a flat colour."""
    img = Image.frombytes("RGB", (900, 600), random.Random(7).randbytes(900 * 600 * 3))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def upload(account: Account, board: dict[str, Any], data: bytes) -> dict[str, Any]:
    node = account.client.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    r = account.client.post(f"/v1/nodes/{node['id']}/image", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def thumbnail_row(stack: Stack, image_id: str) -> OutboxEvent:
    with session_scope(stack.engine) as session:
        rows = list(session.exec(select(OutboxEvent).where(col(OutboxEvent.subject_id) == image_id,
                                                           col(OutboxEvent.topic) == StoreThumbnail.topic)))
    assert len(rows) == 1, rows
    return rows[0]


def image_row(stack: Stack, image_id: str) -> ImageRow:
    with session_scope(stack.engine) as session:
        image = session.get(ImageRow, image_id)
    assert image is not None
    return image


def stored(stack: Stack, image_id: str) -> ImageRow:
    """The upload's thumbnail once its process stored it and its row was marked."""
    wait_for(lambda: thumbnail_row(stack, image_id).processed_at is not None,
             what="the upload's thumbnail row to be marked stored")
    image = image_row(stack, image_id)
    assert stack.store.exists(image.thumbnail_key)
    return image


def left_behind(stack: Stack, image: ImageRow, written_at: datetime) -> None:
    """What an api that died between the upload's commit and the thumbnail's store leaves: the
    row pending, no thumbnail object. `written_at` in the future keeps the background relay off
    it (it takes rows older than the after-commit grace)."""
    stack.store.delete(image.thumbnail_key)
    with session_scope(stack.engine) as session:
        row = session.get(OutboxEvent, thumbnail_row(stack, image.id).id)
        assert row is not None
        row.processed_at = None
        row.created_at = written_at
        session.add(row)


def settle(stack: Stack, image_id: str) -> None:
    """Mark a row a test left pending, so the relay does not find it later."""
    with session_scope(stack.engine) as session:
        row = session.get(OutboxEvent, thumbnail_row(stack, image_id).id)
        assert row is not None
        row.processed_at = utcnow()
        session.add(row)


def test_an_upload_stores_its_thumbnail_and_marks_its_row(stack: Stack, account: Account,
                                                          board: dict[str, Any]) -> None:
    data = picture()
    image = upload(account, board, data)["image"]
    # Fetched at once: the route waits for the store if it is still going on.
    assert follow(account.client, image["thumbnail_url"]).content == inspect_with_thumbnail(data)[1]
    stored(stack, image["id"])


def test_a_thumbnail_whose_api_died_is_stored_by_the_relay(stack: Stack, account: Account,
                                                           board: dict[str, Any]) -> None:
    data = picture()
    image = stored(stack, upload(account, board, data)["image"]["id"])
    left_behind(stack, image, utcnow() - timedelta(minutes=1))
    wait_for(lambda: thumbnail_row(stack, image.id).processed_at is not None,
             what="the relay to store the thumbnail left behind")
    assert stack.store.get(image.thumbnail_key) == inspect_with_thumbnail(data)[1]


def test_the_route_stores_a_thumbnail_left_behind_before_it_redirects(stack: Stack, account: Account,
                                                                      board: dict[str, Any]) -> None:
    data = picture()
    body = upload(account, board, data)
    image = stored(stack, body["image"]["id"])
    left_behind(stack, image, utcnow() + timedelta(hours=1))
    try:
        assert not stack.store.exists(image.thumbnail_key)
        assert follow(account.client, body["image"]["thumbnail_url"]).content == inspect_with_thumbnail(data)[1]
        # The board read's thumbnail URL is the same route.
        board_view = account.client.get(f"/v1/boards/{board['id']}").json()
        [shown] = [n for n in board_view["nodes"] if n["id"] == body["id"]]
        assert shown["image"]["thumbnail_url"] == body["image"]["thumbnail_url"]
    finally:
        settle(stack, image.id)


def test_a_node_deleted_before_its_thumbnail_was_stored_keeps_it_in_the_library(
        stack: Stack, account: Account, board: dict[str, Any]) -> None:
    data = picture()
    body = upload(account, board, data)
    image = stored(stack, body["image"]["id"])
    left_behind(stack, image, utcnow() + timedelta(hours=1))
    try:
        lib = library(stack, account)
        asset = wait_asset(lib, delete_node(account.client, body["id"]))
        assert follow(lib, asset["image"]["thumbnail_url"]).content == inspect_with_thumbnail(data)[1]
        assert follow(lib, asset["image"]["url"]).content == data
    finally:
        settle(stack, image.id)
