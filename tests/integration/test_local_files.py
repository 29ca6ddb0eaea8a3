"""The local-file storage backend: images behind short-lived signed `/v1/files/...` links."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.s3 import free_port
from tests.fixtures.stack import ServerThread, Stack, make_settings, one_database, png_bytes

pytestmark = [pytest.mark.integration, one_database("sqlite")]


@pytest.fixture(scope="module")
def local_api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second api on the same database and Redis as `stack`, storing files on disk."""
    from easel_api.main import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root: Path = tmp_path_factory.mktemp("objects") / "fresh"  # does not exist yet
    settings = make_settings(**{
        **stack.settings.model_dump(),
        "storage_backend": "local",
        "local_storage_dir": str(root),
        "api_public_url": url,
    })
    server = ServerThread(create_app(settings), port)
    server.start()
    yield url
    server.stop()


@pytest.fixture
def client(stack: Stack, local_api: str) -> httpx.Client:
    account = stack.new_account()
    return stack.client(account.api_key, base_url=local_api)


def uploaded_node(c: httpx.Client, data: bytes) -> dict[str, Any]:
    board = c.post("/v1/boards", json={"name": "local"}).json()
    node = c.post(f"/v1/boards/{board['id']}/nodes", json={"kind": "image"}).json()
    r = c.post(f"/v1/nodes/{node['id']}/image", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def signed_link(c: httpx.Client, path: str, local_api: str) -> str:
    r = c.get(path)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(f"{local_api}/v1/files/")
    return location


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for k, v in changes.items():
        if v is None:
            query.pop(k, None)
        else:
            query[k] = v
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_fresh_local_storage_is_ready(local_api: str) -> None:
    r = httpx.get(f"{local_api}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["storage"] == "ok"


def test_upload_and_serve_exact_bytes(client: httpx.Client, local_api: str) -> None:
    data = png_bytes(33, 17, (5, 6, 7))
    node = uploaded_node(client, data)
    link = signed_link(client, f"/v1/nodes/{node['id']}/image/content", local_api)
    # The signed link works without the API key: it is the credential.
    served = httpx.get(link, timeout=10)
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/png"
    assert not served.headers.get("content-disposition", "").startswith("attachment")
    # The image url in the node view leads to the same bytes.
    assert client.get(node["image"]["url"], follow_redirects=True).content == data


def test_download_is_an_attachment(client: httpx.Client, local_api: str) -> None:
    data = png_bytes(10, 10)
    node = uploaded_node(client, data)
    link = signed_link(client, f"/v1/nodes/{node['id']}/image/download", local_api)
    served = httpx.get(link, timeout=10)
    assert served.status_code == 200
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.content == data


def test_thumbnail_is_served(client: httpx.Client) -> None:
    node = uploaded_node(client, png_bytes(400, 100))
    served = client.get(node["image"]["thumbnail_url"], follow_redirects=True)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("image/")


def tampered_links(link: str) -> list[str]:
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    parts = urlsplit(link)
    other_key = parts._replace(path=parts.path.replace(".png", ".thumb.webp"))
    return [
        with_query(link, sig=flipped),
        with_query(link, sig=None),
        with_query(link, sig=""),
        with_query(link, expires=str(int(parse_qs(parts.query)["expires"][0]) + 3600)),
        with_query(link, filename="evil.png"),  # turning an inline link into a download
        urlunsplit(other_key),  # another object with this object's signature
    ]


def test_tampered_links_are_not_found(client: httpx.Client, local_api: str) -> None:
    node = uploaded_node(client, png_bytes())
    link = signed_link(client, f"/v1/nodes/{node['id']}/image/content", local_api)
    assert httpx.get(link, timeout=10).status_code == 200
    for bad in tampered_links(link):
        r = httpx.get(bad, timeout=10)
        assert r.status_code == 404, bad
        assert r.json()["error"]["code"] == "not_found"


def test_path_outside_the_store_is_not_found(local_api: str) -> None:
    for path in ("/v1/files/../../etc/passwd", "/v1/files/%2e%2e/%2e%2e/etc/passwd", "/v1/files/"):
        r = httpx.get(f"{local_api}{path}?expires=9999999999&sig=00", timeout=10)
        assert r.status_code == 404, path


def test_s3_backed_api_serves_no_local_files(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/v1/files/images/x.png?expires=9999999999&sig=00", timeout=10)
    assert r.status_code == 404
