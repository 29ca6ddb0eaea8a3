"""`ObjectStore.list_keys` on both backends (the same `local_store` / `s3_store` fixtures as the
conformance suite): what the orphan collector relies on to find objects no row owns."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from easel_shared.storage import ObjectStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    result: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return result


def _keys(store: ObjectStore, prefix: str) -> set[str]:
    return {item.key for item in store.list_keys(prefix)}


def test_lists_exactly_the_keys_under_a_prefix(store: ObjectStore) -> None:
    inside = {"images/acc_1/img_a.png", "images/acc_1/img_a.thumb.webp", "images/acc_2/img_b.jpg"}
    outside = {"assets/acc_1/ast_a.png", "imagesque/x.png", "top.bin"}
    for key in inside | outside:
        store.put(key, b"x", "application/octet-stream")

    assert _keys(store, "images/") == inside
    assert _keys(store, "images/acc_1/") == {"images/acc_1/img_a.png", "images/acc_1/img_a.thumb.webp"}
    # A plain string prefix, not a directory: a partial last segment matches like on S3.
    assert _keys(store, "images/acc_1/img_a.t") == {"images/acc_1/img_a.thumb.webp"}
    assert _keys(store, "image") == inside | {"imagesque/x.png"}
    assert _keys(store, "") == inside | outside
    assert _keys(store, "nothing/") == set()


def test_deleted_objects_are_no_longer_listed(store: ObjectStore) -> None:
    store.put("images/acc/img_1.png", b"1", "image/png")
    store.put("images/acc/img_2.png", b"2", "image/png")
    store.delete("images/acc/img_1.png")
    assert _keys(store, "images/") == {"images/acc/img_2.png"}


def test_last_modified_is_when_the_object_was_written(store: ObjectStore) -> None:
    before = datetime.now(UTC)
    store.put("images/acc/img_1.png", b"1", "image/png")
    after = datetime.now(UTC)
    [item] = list(store.list_keys("images/"))
    assert item.last_modified.tzinfo is not None
    # S3 reports whole seconds (and the server's clock): allow that much either way.
    assert before - timedelta(seconds=2) <= item.last_modified <= after + timedelta(seconds=2)


def test_lists_every_page_of_a_large_prefix(store: ObjectStore) -> None:
    keys = {f"images/acc/img_{i:04d}.png" for i in range(1005)}  # S3 pages hold 1000 keys
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put(key, b"x", "image/png"), keys))
    listed = [item.key for item in store.list_keys("images/acc/")]
    assert len(listed) == len(keys) and set(listed) == keys


@pytest.mark.parametrize("prefix", ["/images/", "images/../x", "images//", "a\\b", "x\x00"])
def test_unsafe_prefixes_are_rejected_before_listing(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        store.list_keys(prefix)
