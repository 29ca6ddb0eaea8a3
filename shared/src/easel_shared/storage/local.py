"""Objects as plain files, served through HMAC-signed ``/v1/files`` URLs.

Meant for development and single-node setups: the "presigned" URLs point at a tiny
``GET /v1/files/{key:path}`` route that the api and assets services mount and which checks
the URL with :func:`verify_signed_url` before serving ``path_for(key)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from easel_shared.storage.base import DEFAULT_CONTENT_TYPE, ListedObject
from easel_shared.storage.errors import ObjectNotFound, StorageError
from easel_shared.storage.keys import check_download_filename, check_expires_in, validate_key, validate_prefix


def _signature_payload(key: str, expires: int, filename: str | None) -> bytes:
    # JSON keeps the three fields unambiguous (no delimiter games, None != "").
    return json.dumps(["easel-file-v1", key, expires, filename], separators=(",", ":")).encode("utf-8", "surrogatepass")


def _sign(signing_secret: str, key: str, expires: int, filename: str | None) -> str:
    return hmac.new(
        signing_secret.encode("utf-8"),
        _signature_payload(key, expires, filename),
        hashlib.sha256,
    ).hexdigest()


def verify_signed_url(
    *,
    signing_secret: str,
    key: str,
    expires: int,
    signature: str,
    filename: str | None,
    now: float | None = None,
) -> bool:
    """Check the ``expires``/``sig``/``filename`` of a :class:`LocalObjectStore` URL.

    ``key`` and ``filename`` are the *decoded* values from the request. Returns
    False when the signature does not match (compared in constant time), when
    the URL has expired, or when ``signing_secret`` is empty.
    """
    if not signing_secret:
        return False
    current = time.time() if now is None else now
    if current > expires:
        return False
    expected = _sign(signing_secret, key, expires, filename)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "surrogatepass"))


class LocalObjectStore:
    """Objects as files under ``root``.

    Layout: ``root/objects/<key>`` holds the bytes (see :meth:`path_for`),
    ``root/meta/<key>`` a small JSON document with the content type, and
    ``root/tmp`` the temporary files that :meth:`put` renames into place.
    Keeping the three trees apart means no key can collide with a sidecar.
    """

    def __init__(self, *, root: str | Path, signing_secret: str, public_base_url: str) -> None:
        if not signing_secret:
            raise ValueError("LocalObjectStore needs a non-empty signing_secret")
        if not public_base_url:
            raise ValueError("LocalObjectStore needs a public_base_url")
        self.root = Path(root).expanduser()
        self.public_base_url = public_base_url.rstrip("/")
        self._signing_secret = signing_secret
        self._objects = self.root / "objects"
        self._meta = self.root / "meta"
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    # -- paths ------------------------------------------------------------- #

    def path_for(self, key: str) -> Path:
        """The file holding the object's bytes (``ValueError`` for unsafe keys)."""
        validate_key(key)
        return self._objects.joinpath(*key.split("/"))

    def _meta_path(self, key: str) -> Path:
        return self._meta.joinpath(*key.split("/"))

    def _write_atomically(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o644)  # mkstemp uses 0600
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    # -- ObjectStore ------------------------------------------------------- #

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self.path_for(key)
        meta = json.dumps({"content_type": content_type or DEFAULT_CONTENT_TYPE}).encode()
        try:
            # Metadata first: once the data file is visible its metadata is too.
            self._write_atomically(self._meta_path(key), meta)
            self._write_atomically(path, data)
        except OSError as exc:
            raise StorageError(f"local put {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"local get {key}: not found") from exc
        except OSError as exc:
            raise StorageError(f"local get {key} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        for target in (path, self._meta_path(key)):
            try:
                target.unlink(missing_ok=True)
            except (IsADirectoryError, NotADirectoryError):
                pass  # a "directory" prefix or a file in the way: no such object
            except OSError as exc:
                raise StorageError(f"local delete {key} failed: {exc}") from exc

    def copy(self, src_key: str, dst_key: str) -> None:
        self.path_for(dst_key)  # validate before touching anything
        data = self.get(src_key)
        self.put(dst_key, data, self.content_type(src_key))

    def content_type(self, key: str) -> str:
        """The content type given to :meth:`put`; :class:`ObjectNotFound` if missing."""
        path = self.path_for(key)
        try:
            meta = json.loads(self._meta_path(key).read_bytes())
            value = meta.get("content_type") if isinstance(meta, dict) else None
            if isinstance(value, str) and value:
                return value
        except (OSError, ValueError):
            pass
        if not path.is_file():
            raise ObjectNotFound(f"local content_type {key}: not found")
        guessed, _ = mimetypes.guess_type(path.name)
        return guessed or DEFAULT_CONTENT_TYPE

    def list_keys(self, prefix: str) -> Iterator[ListedObject]:
        """Walks only the directories the prefix can reach (``images/acc`` reads ``images/``,
        then only entries starting with ``acc``); a file removed while the walk runs is skipped.
        Only ``objects/`` is read, and :meth:`put` renames finished files into it, so a
        half-written object is never listed."""
        validate_prefix(prefix)
        directory = prefix.rpartition("/")[0]
        start = self._objects.joinpath(*directory.split("/")) if directory else self._objects
        return self._walk(start, directory, prefix)

    def _walk(self, path: Path, key_prefix: str, wanted: str) -> Iterator[ListedObject]:
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"local list {wanted or '(all)'} failed: {exc}") from exc
        for entry in entries:
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(wanted) or wanted.startswith(key + "/"):
                        yield from self._walk(Path(entry.path), key, wanted)
                elif entry.is_file(follow_symlinks=False) and key.startswith(wanted):
                    yield ListedObject(key, datetime.fromtimestamp(entry.stat().st_mtime, UTC))
            except FileNotFoundError:
                continue

    def presigned_url(self, key: str, *, expires_in: int, download_filename: str | None = None) -> str:
        validate_key(key)
        check_expires_in(expires_in)
        check_download_filename(download_filename)
        expires = int(time.time()) + expires_in
        sig = _sign(self._signing_secret, key, expires, download_filename)
        path = quote(key, safe="/")
        url = f"{self.public_base_url}/v1/files/{path}?expires={expires}&sig={sig}"
        if download_filename is not None:
            url += f"&filename={quote(download_filename, safe='')}"
        return url

    def check(self) -> None:
        if not self._objects.is_dir():
            raise StorageError(f"local object store directory {str(self._objects)!r} is missing")
        if not os.access(self._objects, os.R_OK | os.W_OK | os.X_OK):
            raise StorageError(f"local object store directory {str(self._objects)!r} is not writable")

    def ensure_bucket(self) -> None:
        try:
            for directory in (self._objects, self._meta, self._tmp):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create local object store under {self.root}: {exc}") from exc
