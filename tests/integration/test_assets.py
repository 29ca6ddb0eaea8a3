"""The assets library, end to end: images of deleted nodes and boards land in the library through
the database outbox (even when the assets service or Redis was down), each account sees only its
own assets, and assets own their bytes independently of the nodes that show the same image."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis
from sqlmodel import select

from easel_shared.db import session_scope
from easel_shared.models import Asset, OutboxEvent
from easel_shared.repositories.outbox import RETAIN_IMAGE
from tests.fixtures.s3 import free_port
from tests.fixtures.stack import Account, Stack, one_database, png_bytes, wait_for

pytestmark = [pytest.mark.integration, one_database()]


# -- helpers ----------------------------------------------------------------------------------- #


def library(stack: Stack, account: Account) -> httpx.Client:
    assert stack.assets_url is not None, "the assets service did not start"
    return stack.client(account.api_key, base_url=stack.assets_url)


def follow(client: httpx.Client, path: str) -> httpx.Response:
    """GET a redirecting route and fetch the short-lived URL it points at (without our API key)."""
    r = client.get(path)
    assert r.status_code == 302, r.text
    got = httpx.get(r.headers["location"], timeout=30)
    assert got.status_code == 200, got.text
    return got


def image_node(client: httpx.Client, board_id: str) -> dict[str, Any]:
    r = client.post(f"/v1/boards/{board_id}/nodes", json={"kind": "image"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def uploaded_node(client: httpx.Client, board_id: str, color: tuple[int, int, int] = (200, 30, 30)) -> dict[str, Any]:
    node = image_node(client, board_id)
    r = client.post(f"/v1/nodes/{node['id']}/image", files={"file": ("x.png", png_bytes(color=color), "image/png")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "ready" and body["image"]["source"] == "upload"
    return body


def cropped_node(client: httpx.Client, board_id: str) -> dict[str, Any]:
    node = uploaded_node(client, board_id)
    r = client.post(f"/v1/nodes/{node['id']}/image/crop", json={"x": 8, "y": 8, "width": 32, "height": 24})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["image"]["source"] == "crop" and (body["image"]["width"], body["image"]["height"]) == (32, 24)
    return body


def generated_node(client: httpx.Client, board_id: str) -> dict[str, Any]:
    node = image_node(client, board_id)
    model_id = client.get("/v1/models").json()["items"][0]["id"]
    r = client.post(
        f"/v1/nodes/{node['id']}/generations",
        json={"model_id": model_id, "prompt": "a red fox", "params": {"resolution": "1K", "aspect_ratio": "1:1"}},
    )
    assert r.status_code == 202, r.text
    body: dict[str, Any] = wait_for(
        lambda: (n := client.get(f"/v1/nodes/{node['id']}").json())["status"] in ("ready", "failed") and n,
        what="the generation to finish",
    )
    assert body["status"] == "ready", body
    assert body["image"]["source"] == "generation"
    return body


def node_bytes(client: httpx.Client, node_id: str) -> bytes:
    return follow(client, f"/v1/nodes/{node_id}/image/content").content


def delete_node(client: httpx.Client, node_id: str) -> str:
    r = client.delete(f"/v1/nodes/{node_id}")
    assert r.status_code == 200, r.text
    asset_id: str = r.json()["asset_id"]
    assert asset_id
    return asset_id


def wait_asset(lib: httpx.Client, asset_id: str) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(
        lambda: (r := lib.get(f"/v1/assets/{asset_id}")).status_code == 200 and r.json(),
        what=f"asset {asset_id} to reach the library",
    )
    return body


def asset_row(stack: Stack, asset_id: str) -> Asset | None:
    with session_scope(stack.engine) as session:
        return session.get(Asset, asset_id)


def listed_ids(lib: httpx.Client, **params: Any) -> list[str]:
    r = lib.get("/v1/assets", params=params)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


# -- retention --------------------------------------------------------------------------------- #


MAKERS = {"upload": uploaded_node, "crop": cropped_node, "generation": generated_node}


@pytest.mark.parametrize("source", ["upload", "crop", "generation"])
def test_deleted_node_image_reaches_the_library(
    stack: Stack, account: Account, board: dict[str, Any], source: str
) -> None:
    c, lib = account.client, library(stack, account)
    node = MAKERS[source](c, board["id"])
    original = node_bytes(c, node["id"])

    asset_id = delete_node(c, node["id"])
    asset = wait_asset(lib, asset_id)

    assert asset["id"] == asset_id
    assert asset["origin"] == {"board_id": board["id"], "node_id": node["id"], "reason": "node_deleted"}
    image = asset["image"]
    assert image["source"] == source
    for field in ("content_type", "width", "height", "size_bytes"):
        assert image[field] == node["image"][field], field
    assert image["url"] == f"{stack.assets_url}/v1/assets/{asset_id}/content"
    assert image["thumbnail_url"] == f"{stack.assets_url}/v1/assets/{asset_id}/thumbnail"
    assert asset["created_at"].endswith("Z") and image["created_at"].endswith("Z")

    assert follow(lib, image["url"]).content == original
    thumb = follow(lib, image["thumbnail_url"])
    assert thumb.headers["content-type"].startswith("image/") and thumb.content != original
    download = follow(lib, f"/v1/assets/{asset_id}/download")
    assert download.content == original
    assert download.headers["content-disposition"].startswith("attachment")
    assert listed_ids(lib) == [asset_id]


def test_deleting_a_board_retains_every_image(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c, lib = account.client, library(stack, account)
    nodes = [uploaded_node(c, board["id"], color=(10, 200, 10)), uploaded_node(c, board["id"], color=(10, 10, 200))]
    c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "text", "text": "no image here"})
    originals = {n["id"]: node_bytes(c, n["id"]) for n in nodes}

    r = c.delete(f"/v1/boards/{board['id']}")
    assert r.status_code == 204, r.text

    items: list[dict[str, Any]] = wait_for(
        lambda: len(got := lib.get("/v1/assets").json()["items"]) >= 2 and got, what="both images in the library"
    )
    assert len(items) == 2
    assert {i["origin"]["node_id"] for i in items} == set(originals)
    for item in items:
        assert item["origin"]["board_id"] == board["id"]
        assert item["origin"]["reason"] == "board_deleted"
        assert follow(lib, f"/v1/assets/{item['id']}/content").content == originals[item["origin"]["node_id"]]


@pytest.mark.slow
def test_deletion_while_the_assets_service_is_down(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    assert stack.stop_assets is not None and stack.start_assets is not None
    c, lib = account.client, library(stack, account)
    node = uploaded_node(c, board["id"])
    original = node_bytes(c, node["id"])

    stack.stop_assets()
    try:
        asset_id = delete_node(c, node["id"])
        assert asset_row(stack, asset_id) is None  # nobody is there to process the event yet
    finally:
        stack.start_assets()

    asset = wait_asset(lib, asset_id)
    assert asset["origin"]["reason"] == "node_deleted"
    assert follow(lib, f"/v1/assets/{asset_id}/content").content == original


@pytest.mark.slow
def test_deletion_while_redis_is_down(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    if not stack.redis.controllable:
        pytest.skip("Redis comes from TEST_REDIS_URL and cannot be stopped here")
    c, lib = account.client, library(stack, account)
    node = uploaded_node(c, board["id"])
    original = node_bytes(c, node["id"])

    stack.redis.stop()
    try:
        asset_id = delete_node(c, node["id"])
        # The library needs no Redis: the event waits in the database, not on the broker.
        asset = wait_asset(lib, asset_id)
    finally:
        stack.redis.start()
        probe = redis.Redis.from_url(stack.redis.url, socket_connect_timeout=1)
        try:
            wait_for(lambda: probe.ping(), what="Redis to answer again")
        finally:
            probe.close()
        wait_for(lambda: httpx.get(f"{stack.api_url}/readyz").status_code == 200, what="the api to be ready")

    assert asset["origin"]["node_id"] == node["id"]
    assert follow(lib, f"/v1/assets/{asset_id}/content").content == original


def test_a_duplicate_retention_event_makes_one_asset(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c, lib = account.client, library(stack, account)
    node = uploaded_node(c, board["id"])
    asset_id = delete_node(c, node["id"])
    wait_asset(lib, asset_id)

    with session_scope(stack.engine) as session:
        events = session.exec(
            select(OutboxEvent).where(OutboxEvent.topic == RETAIN_IMAGE, OutboxEvent.account_id == account.id)
        ).all()
        [original] = [e for e in events if e.payload.get("asset_id") == asset_id]
        duplicate = OutboxEvent(topic=RETAIN_IMAGE, account_id=account.id, payload=dict(original.payload))
        session.add(duplicate)
        session.flush()
        duplicate_id = duplicate.id

    def settled() -> OutboxEvent | None:
        with session_scope(stack.engine) as session:
            event = session.get(OutboxEvent, duplicate_id)
            return event if event is not None and event.processed_at is not None else None

    event = wait_for(settled, what="the duplicate event to be processed")
    assert event.last_error is None
    assert listed_ids(lib) == [asset_id]


def test_a_late_duplicate_never_brings_a_deleted_asset_back(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    c, lib = account.client, library(stack, account)
    asset_id = delete_node(c, uploaded_node(c, board["id"])["id"])
    wait_asset(lib, asset_id)
    assert lib.delete(f"/v1/assets/{asset_id}").status_code == 204

    with session_scope(stack.engine) as session:
        [original] = [
            e for e in session.exec(select(OutboxEvent).where(OutboxEvent.account_id == account.id)).all()
            if e.payload.get("asset_id") == asset_id
        ]
        duplicate = OutboxEvent(topic=RETAIN_IMAGE, account_id=account.id, payload=dict(original.payload))
        session.add(duplicate)
        session.flush()
        duplicate_id = duplicate.id

    def settled() -> bool:
        with session_scope(stack.engine) as session:
            event = session.get(OutboxEvent, duplicate_id)
            return event is not None and event.processed_at is not None

    wait_for(settled, what="the late duplicate to be processed")
    assert lib.get(f"/v1/assets/{asset_id}").status_code == 404
    assert asset_id not in listed_ids(lib)


# -- the library API --------------------------------------------------------------------------- #


def test_another_account_can_neither_see_nor_use_the_asset(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    c, lib = account.client, library(stack, account)
    asset_id = delete_node(c, uploaded_node(c, board["id"])["id"])
    wait_asset(lib, asset_id)

    other = stack.new_account()
    other_lib = library(stack, other)
    assert listed_ids(other_lib) == []
    for suffix in ("", "/content", "/download", "/thumbnail"):
        r = other_lib.get(f"/v1/assets/{asset_id}{suffix}")
        assert r.status_code == 404, (suffix, r.text)
        assert r.json()["error"]["code"] == "not_found"
        assert "location" not in r.headers
    their_board = other.client.post("/v1/boards", json={"name": "theirs"}).json()
    r = other.client.post(f"/v1/boards/{their_board['id']}/nodes", json={"kind": "image", "asset_id": asset_id})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    r = other_lib.delete(f"/v1/assets/{asset_id}")
    assert r.status_code == 404, r.text

    assert lib.get(f"/v1/assets/{asset_id}").status_code == 200
    assert listed_ids(lib) == [asset_id]


def test_the_library_requires_an_api_key(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    assert stack.assets_url is not None
    anonymous = stack.client(base_url=stack.assets_url)
    wrong = stack.client("esk_not-a-real-key", base_url=stack.assets_url)
    for client in (anonymous, wrong):
        for method, path in (("GET", "/v1/assets"), ("GET", "/v1/assets/ast_x/content"), ("DELETE", "/v1/assets/x")):
            r = client.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "unauthenticated"
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200
    assert "easel_http_requests_total" in anonymous.get("/metrics").text


def test_placing_an_asset_copies_it_onto_a_board(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c, lib = account.client, library(stack, account)
    node = uploaded_node(c, board["id"])
    original = node_bytes(c, node["id"])
    asset_id = delete_node(c, node["id"])
    wait_asset(lib, asset_id)

    r = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image", "asset_id": asset_id})
    assert r.status_code == 201, r.text
    placed = r.json()
    assert placed["status"] == "ready"
    assert placed["image"]["source"] == "asset"
    assert node_bytes(c, placed["id"]) == original
    assert lib.get(f"/v1/assets/{asset_id}").status_code == 200
    assert listed_ids(lib) == [asset_id]

    assert lib.delete(f"/v1/assets/{asset_id}").status_code == 204
    # The node holds its own copy: the asset's deletion does not reach it.
    assert node_bytes(c, placed["id"]) == original
    assert c.get(f"/v1/nodes/{placed['id']}").json()["status"] == "ready"


def test_deleting_an_asset_removes_it_and_its_bytes(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c, lib = account.client, library(stack, account)
    asset_id = delete_node(c, uploaded_node(c, board["id"])["id"])
    wait_asset(lib, asset_id)
    row = asset_row(stack, asset_id)
    assert row is not None
    keys = (row.storage_key, row.thumbnail_key)
    assert all(stack.store.exists(k) for k in keys)

    r = lib.delete(f"/v1/assets/{asset_id}")
    assert r.status_code == 204, r.text
    assert lib.get(f"/v1/assets/{asset_id}").status_code == 404
    assert lib.get(f"/v1/assets/{asset_id}/content").status_code == 404
    assert listed_ids(lib) == []
    assert not any(stack.store.exists(k) for k in keys)
    assert lib.delete(f"/v1/assets/{asset_id}").status_code == 404


def test_list_is_newest_first_and_pages_by_cursor(stack: Stack, account: Account, board: dict[str, Any]) -> None:
    c, lib = account.client, library(stack, account)
    nodes = [uploaded_node(c, board["id"], color=(i * 60, 0, 0)) for i in range(3)]
    asset_ids = [delete_node(c, n["id"]) for n in nodes]
    for asset_id in asset_ids:
        wait_asset(lib, asset_id)
    newest_first = asset_ids[::-1]

    assert listed_ids(lib) == newest_first
    first = lib.get("/v1/assets", params={"limit": 2}).json()
    assert [i["id"] for i in first["items"]] == newest_first[:2]
    assert first["next_cursor"]
    second = lib.get("/v1/assets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in second["items"]] == newest_first[2:]
    assert second["next_cursor"] is None

    for bad in (0, 201, "many"):
        r = lib.get("/v1/assets", params={"limit": bad})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"


@pytest.mark.slow
def test_storage_failures_are_retried_and_hopeless_events_set_aside(
    stack: Stack, account: Account, board: dict[str, Any]
) -> None:
    from easel_assets.consumer import process_pending
    from easel_assets.context import build_context

    assert stack.stop_assets is not None and stack.start_assets is not None
    c, lib = account.client, library(stack, account)
    node = uploaded_node(c, board["id"])
    original = node_bytes(c, node["id"])
    healthy = build_context(stack.settings)
    # A real outage: the same store pointed at a port where no S3 server listens.
    broken = build_context(stack.settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}))

    stack.stop_assets()  # this test drives the relay itself
    try:
        asset_id = delete_node(c, node["id"])
        with session_scope(stack.engine) as session:
            hopeless = OutboxEvent(
                topic=RETAIN_IMAGE,
                account_id=account.id,
                payload={
                    "asset_id": "ast_hopeless" + account.id,
                    "image_id": "img_missing",
                    "board_id": board["id"],
                    "node_id": "nod_gone",
                    "reason": "node_deleted",
                },
            )
            session.add(hopeless)
            session.flush()
            hopeless_id = hopeless.id

        def event_for(asset: str) -> OutboxEvent:
            with session_scope(stack.engine) as session:
                rows = session.exec(select(OutboxEvent).where(OutboxEvent.account_id == account.id)).all()
                [row] = [e for e in rows if e.payload.get("asset_id") == asset]
                return row

        assert process_pending(broken) == 1  # only the hopeless one is settled
        failed = event_for(asset_id)
        assert failed.processed_at is None and failed.attempts == 1 and "storage" in (failed.last_error or "")
        assert asset_row(stack, asset_id) is None
        with session_scope(stack.engine) as session:
            set_aside = session.get(OutboxEvent, hopeless_id)
            assert set_aside is not None and set_aside.processed_at is not None and set_aside.last_error

        assert process_pending(healthy) == 1
        assert event_for(asset_id).processed_at is not None
        assert asset_row(stack, asset_id) is not None
    finally:
        stack.start_assets()
    assert follow(lib, f"/v1/assets/{asset_id}/content").content == original
    assert listed_ids(lib) == [asset_id]


def test_values_the_database_cannot_hold_are_not_server_errors(stack: Stack, account: Account) -> None:
    lib = library(stack, account)
    r = lib.get("/v1/assets", params={"cursor": "ast_\x00"})
    # PostgreSQL refuses NUL in text (a clear 422); SQLite stores it and finds nothing.
    assert r.status_code == (422 if stack.db_kind == "postgresql" else 200), r.text
    r = lib.get("/v1/assets/ast_%00x")
    assert r.status_code == (422 if stack.db_kind == "postgresql" else 404), r.text
