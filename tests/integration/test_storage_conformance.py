"""One behaviour, two backends: each ObjectStore test runs on the local and S3 store.

Presigned URLs are fetched over real HTTP: straight from the S3 server, or, for
the local store, from a small stdlib server that does what the api/assets
``GET /v1/files/{key:path}`` route does (verify the signature, serve the bytes).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from easel_shared.storage import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    TransientStorageError,
    build_object_store,
    content_disposition,
    verify_signed_url,
)
from tests.fixtures.s3 import (
    LOCAL_PUBLIC_BASE_URL,
    LOCAL_SIGNING_SECRET,
    S3_REGION,
    drop_bucket,
    free_port,
)

pytestmark = pytest.mark.integration

# Every byte value, plus sequences that text-mode handling would mangle.
BINARY = bytes(range(256)) * 8 + b"\r\n\x00\xff\xfe" + b"\x89PNG\r\n\x1a\n"

Fetch = Callable[[ObjectStore, str], httpx.Response]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    result: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return result


# --------------------------------------------------------------------------- #
# The /v1/files route, as the services implement it, on a real socket
# --------------------------------------------------------------------------- #


def _files_handler(store: LocalObjectStore) -> type[BaseHTTPRequestHandler]:
    class FilesHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            prefix = "/v1/files/"
            if not url.path.startswith(prefix):
                self._reply(404)
                return
            key = unquote(url.path[len(prefix) :])
            query = parse_qs(url.query)
            try:
                expires = int(query["expires"][0])
                signature = query["sig"][0]
            except (KeyError, ValueError):
                self._reply(403)
                return
            filename = query.get("filename", [None])[0]
            if not verify_signed_url(
                signing_secret=LOCAL_SIGNING_SECRET,
                key=key,
                expires=expires,
                signature=signature,
                filename=filename,
            ):
                self._reply(403)
                return
            try:
                data = store.get(key)
                content_type = store.content_type(key)
            except (ObjectNotFound, ValueError):
                self._reply(404)
                return
            self._reply(
                200,
                data,
                {
                    "Content-Type": content_type,
                    "Content-Disposition": content_disposition(filename),
                },
            )

        def _reply(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return FilesHandler


@pytest.fixture
def fetch() -> Iterator[Fetch]:
    """GET a presigned URL over HTTP, whichever store produced it."""
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=10))
        servers: dict[int, str] = {}

        def serve(store: LocalObjectStore) -> str:
            if id(store) not in servers:
                server = ThreadingHTTPServer(("127.0.0.1", 0), _files_handler(store))
                threading.Thread(target=server.serve_forever, daemon=True).start()
                stack.callback(server.server_close)
                stack.callback(server.shutdown)
                servers[id(store)] = f"http://127.0.0.1:{server.server_address[1]}"
            return servers[id(store)]

        def do_fetch(store: ObjectStore, url: str) -> httpx.Response:
            if isinstance(store, LocalObjectStore):
                assert url.startswith(f"{LOCAL_PUBLIC_BASE_URL}/v1/files/")
                url = serve(store) + url[len(LOCAL_PUBLIC_BASE_URL) :]
            return client.get(url)

        yield do_fetch


# --------------------------------------------------------------------------- #
# Conformance
# --------------------------------------------------------------------------- #


def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    store.put("boards/b1/nodes/n1/original.png", BINARY, "image/png")

    assert store.get("boards/b1/nodes/n1/original.png") == BINARY


def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    store.put("k.png", b"first version", "image/png")
    store.put("k.png", b"second", "image/webp")

    assert store.get("k.png") == b"second"


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("boards/b1/never-written.png")


def test_exists_follows_put_and_delete(store: ObjectStore) -> None:
    assert not store.exists("a/b.png")
    store.put("a/b.png", b"x", "image/png")
    assert store.exists("a/b.png")
    assert not store.exists("a")  # a prefix is not an object
    store.delete("a/b.png")
    assert not store.exists("a/b.png")


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.delete("never/written.png")
    store.put("gone.png", b"x", "image/png")

    store.delete("gone.png")
    store.delete("gone.png")

    with pytest.raises(ObjectNotFound):
        store.get("gone.png")


def test_copy_is_independent_of_its_source(store: ObjectStore, fetch: Fetch) -> None:
    store.put("src/img.png", BINARY, "image/png")

    store.copy("src/img.png", "assets/acc1/img.png")
    store.delete("src/img.png")

    assert store.get("assets/acc1/img.png") == BINARY
    assert not store.exists("src/img.png")
    response = fetch(store, store.presigned_url("assets/acc1/img.png", expires_in=60))
    assert response.headers["content-type"] == "image/png"


def test_copy_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.copy("missing.png", "dst.png")
    assert not store.exists("dst.png")


@pytest.mark.parametrize("key", ["boards/b1/out.png", "odd name/ü+plus & 100%.png"])
def test_presigned_url_serves_the_bytes_inline(
    store: ObjectStore, fetch: Fetch, key: str
) -> None:
    store.put(key, BINARY, "image/png")

    response = fetch(store, store.presigned_url(key, expires_in=60))

    assert response.status_code == 200
    assert response.content == BINARY
    assert response.headers["content-type"] == "image/png"
    assert "attachment" not in response.headers.get("content-disposition", "")


def test_download_url_asks_the_browser_to_save_the_file(
    store: ObjectStore, fetch: Fetch
) -> None:
    store.put("boards/b1/out.png", BINARY, "image/png")

    url = store.presigned_url(
        "boards/b1/out.png", expires_in=60, download_filename="sunset v2.png"
    )
    response = fetch(store, url)

    assert response.status_code == 200
    assert response.content == BINARY
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert 'filename="sunset v2.png"' in disposition


def test_download_url_keeps_a_non_ascii_filename(
    store: ObjectStore, fetch: Fetch
) -> None:
    store.put("k.png", b"x", "image/png")

    url = store.presigned_url(
        "k.png", expires_in=60, download_filename='café "ünï".png'
    )
    disposition = fetch(store, url).headers["content-disposition"]

    assert disposition.startswith('attachment; filename="cafe _uni_.png"')
    assert "filename*=UTF-8''caf%C3%A9%20%22%C3%BCn%C3%AF%22.png" in disposition


@pytest.mark.parametrize(
    "key",
    [
        "../escape.png",
        "a/../../escape.png",
        "/etc/passwd",
        "",
        "a//b",
        "a/./b",
        "a\\b",
        "a\nb",
    ],
)
def test_unsafe_keys_are_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        store.put(key, b"x", "image/png")
    with pytest.raises(ValueError, match="key"):
        store.get(key)
    with pytest.raises(ValueError, match="key"):
        store.presigned_url(key, expires_in=60)


def test_check_passes_on_a_healthy_store(store: ObjectStore) -> None:
    store.check()


@pytest.fixture(params=["local", "s3"])
def unprovisioned_store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    """A store whose bucket / directory does not exist yet."""
    if request.param == "local":
        tmp_path = request.getfixturevalue("tmp_path")
        yield LocalObjectStore(
            root=tmp_path / "not-yet",
            signing_secret=LOCAL_SIGNING_SECRET,
            public_base_url=LOCAL_PUBLIC_BASE_URL,
        )
        return
    endpoint_url: str = request.getfixturevalue("s3_endpoint_url")
    credentials: tuple[str, str] = request.getfixturevalue("s3_credentials")
    bucket = f"easel-test-new-{time.time_ns()}"
    yield S3ObjectStore(
        endpoint_url=endpoint_url,
        bucket=bucket,
        region=S3_REGION,
        access_key_id=credentials[0],
        secret_access_key=credentials[1],
    )
    drop_bucket(endpoint_url, credentials, bucket)


def test_ensure_bucket_creates_once_and_keeps_data(
    unprovisioned_store: ObjectStore,
) -> None:
    with pytest.raises(StorageError):
        unprovisioned_store.check()

    unprovisioned_store.ensure_bucket()
    unprovisioned_store.check()
    unprovisioned_store.put("kept.png", b"x", "image/png")
    unprovisioned_store.ensure_bucket()

    assert unprovisioned_store.get("kept.png") == b"x"


# --------------------------------------------------------------------------- #
# S3 only: an endpoint that does not answer
# --------------------------------------------------------------------------- #


def test_s3_store_on_a_closed_port_reports_a_transient_error() -> None:
    dead = S3ObjectStore(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        bucket="easel-unreachable",
        region=S3_REGION,
        access_key_id="test",
        secret_access_key="test",
        max_attempts=1,
    )

    with pytest.raises(TransientStorageError):
        dead.check()
    with pytest.raises(TransientStorageError):
        dead.get("k.png")


def test_s3_presigned_url_uses_the_public_endpoint() -> None:
    store = S3ObjectStore(
        endpoint_url="http://minio:9000",
        bucket="easel",
        region=S3_REGION,
        access_key_id="test",
        secret_access_key="test",
        public_endpoint_url="http://localhost:9000",
    )

    url = store.presigned_url("k.png", expires_in=60)

    assert url.startswith("http://localhost:9000/easel/k.png?")


# --------------------------------------------------------------------------- #
# Local only: signed URLs and the file layout
# --------------------------------------------------------------------------- #


def _signed_params(url: str) -> tuple[str, int, str, str | None]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    key = unquote(parts.path.removeprefix("/v1/files/"))
    filename = query["filename"][0] if "filename" in query else None
    return key, int(query["expires"][0]), query["sig"][0], filename


def _verify(
    key: str, expires: int, sig: str, filename: str | None, now: float | None = None
) -> bool:
    return verify_signed_url(
        signing_secret=LOCAL_SIGNING_SECRET,
        key=key,
        expires=expires,
        signature=sig,
        filename=filename,
        now=now,
    )


def test_local_signed_url_is_accepted_until_it_expires(
    local_store: LocalObjectStore,
) -> None:
    before = time.time()
    key, expires, sig, filename = _signed_params(
        local_store.presigned_url(
            "a b/ü.png", expires_in=300, download_filename="x.png"
        )
    )

    assert key == "a b/ü.png"
    assert filename == "x.png"
    assert before + 299 <= expires <= time.time() + 301
    assert _verify(key, expires, sig, filename)
    assert _verify(key, expires, sig, filename, now=expires)
    assert not _verify(key, expires, sig, filename, now=expires + 1)


def test_local_signed_url_rejects_any_change(local_store: LocalObjectStore) -> None:
    key, expires, sig, filename = _signed_params(
        local_store.presigned_url(
            "boards/b1/a.png", expires_in=300, download_filename="a.png"
        )
    )
    tampered = ("0" if sig[0] != "0" else "1") + sig[1:]

    assert not _verify(key, expires, tampered, filename)
    assert not _verify("boards/b1/other.png", expires, sig, filename)
    assert not _verify(key, expires + 3600, sig, filename)
    assert not _verify(key, expires, sig, "evil.exe")
    assert not _verify(key, expires, sig, None)
    assert not _verify(key, expires, "not hex ü", filename)
    assert not verify_signed_url(
        signing_secret="another secret",
        key=key,
        expires=expires,
        signature=sig,
        filename=filename,
    )


def test_local_tampered_url_is_refused_over_http(
    local_store: LocalObjectStore, fetch: Fetch
) -> None:
    local_store.put("mine.png", b"mine", "image/png")
    local_store.put("theirs.png", b"theirs", "image/png")
    url = local_store.presigned_url("mine.png", expires_in=60)

    assert fetch(local_store, url).status_code == 200
    assert fetch(local_store, url.replace("mine.png", "theirs.png")).status_code == 403
    assert fetch(local_store, url.replace("sig=", "sig=0")).status_code == 403


def test_local_path_for_holds_the_bytes(local_store: LocalObjectStore) -> None:
    local_store.put("boards/b1/n1.webp", BINARY, "image/webp")

    path = local_store.path_for("boards/b1/n1.webp")

    assert path.read_bytes() == BINARY
    assert path.is_relative_to(local_store.root)
    assert local_store.content_type("boards/b1/n1.webp") == "image/webp"


def test_local_key_cannot_collide_with_its_metadata(
    local_store: LocalObjectStore,
) -> None:
    local_store.put("x.png", b"image", "image/png")
    local_store.put("x.png.meta.json", b"{}", "application/json")

    assert local_store.get("x.png") == b"image"
    assert local_store.content_type("x.png") == "image/png"


# --------------------------------------------------------------------------- #
# Factory
# --------------------------------------------------------------------------- #


def _build(backend: str) -> ObjectStore:
    return build_object_store(
        backend=backend,
        local_dir="unused-local-dir",
        signing_secret="secret",
        public_base_url="http://localhost:8000",
        s3_endpoint_url="http://minio:9000",
        s3_bucket="easel",
        s3_region=S3_REGION,
        s3_access_key_id="key",
        s3_secret_access_key="secret",
    )


def test_build_object_store_picks_the_backend() -> None:
    assert isinstance(_build("local"), LocalObjectStore)
    assert isinstance(_build("s3"), S3ObjectStore)


def test_build_object_store_rejects_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match="'gcs'.*'local' or 's3'"):
        _build("gcs")
