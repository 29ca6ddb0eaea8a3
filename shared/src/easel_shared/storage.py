"""Object storage for Easel: one small interface, two backends.

* :class:`S3ObjectStore` talks to S3 or any S3-compatible server (MinIO in
  docker-compose, moto in tests) through boto3.
* :class:`LocalObjectStore` keeps objects as plain files under a root
  directory. It is meant for development and single-node setups; its
  "presigned" URLs point at a tiny ``GET /v1/files/{key:path}`` route that the
  api and assets services mount and which checks the URL with
  :func:`verify_signed_url` before serving ``path_for(key)``.

Both backends accept the same keys (see :func:`validate_key`), so code written
against :class:`ObjectStore` behaves the same on either.

This module must stay free of web-framework imports: the Celery worker uses it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import os
import tempfile
import threading
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_PRESIGN_EXPIRES_IN",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageError",
    "TransientStorageError",
    "build_object_store",
    "content_disposition",
    "validate_key",
    "verify_signed_url",
]

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: SigV4 presigned URLs cannot live longer than seven days; both backends use
#: the same bound so callers see the same behaviour everywhere.
MAX_PRESIGN_EXPIRES_IN = 7 * 24 * 3600

_MAX_KEY_BYTES = 1024  # S3's limit on key length (UTF-8 bytes)


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class StorageError(Exception):
    """The object store failed or refused an operation."""


class TransientStorageError(StorageError):
    """May go away on retry: 5xx, throttling, timeouts, connection errors."""


class ObjectNotFound(StorageError):
    """The requested object does not exist."""


# --------------------------------------------------------------------------- #
# Interface
# --------------------------------------------------------------------------- #


@runtime_checkable
class ObjectStore(Protocol):
    """What the rest of Easel may rely on, whichever backend is configured."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing any previous object)."""
        ...

    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise :class:`ObjectNotFound` if missing."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy an object (server-side on S3); :class:`ObjectNotFound` if no source."""
        ...

    def presigned_url(
        self, key: str, *, expires_in: int, download_filename: str | None = None
    ) -> str:
        """A short-lived GET URL for ``key``.

        With ``download_filename`` the response carries
        ``Content-Disposition: attachment; filename="..."``, otherwise ``inline``.
        """
        ...

    def check(self) -> None:
        """Raise :class:`StorageError` when the store does not answer (/readyz)."""
        ...

    def ensure_bucket(self) -> None:
        """Create the bucket / root directory if missing (idempotent)."""
        ...


# --------------------------------------------------------------------------- #
# Helpers shared by both backends (and by the /v1/files routes)
# --------------------------------------------------------------------------- #


def validate_key(key: str) -> str:
    """Return ``key`` if every backend accepts it, else raise ``ValueError``.

    Keys are ``/``-separated, relative, with no empty, ``.`` or ``..`` segments,
    no backslashes and no control characters, and at most 1024 UTF-8 bytes.
    The rules are deliberately the same for S3 so that a key that works in
    development also works in production (and because ``..`` segments in a
    presigned URL get normalised away by HTTP clients).
    """
    if not isinstance(key, str) or not key:
        raise ValueError("object key must be a non-empty string")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise ValueError(f"object key must not contain control characters, got {key!r}")
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise ValueError(f"object key is longer than {_MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative, got {key!r}")
    if "\\" in key:
        raise ValueError(f"object key must not contain backslashes, got {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"object key must not contain empty, '.' or '..' segments, got {key!r}"
            )
    return key


def _check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an int number of seconds")
    if not 1 <= expires_in <= MAX_PRESIGN_EXPIRES_IN:
        raise ValueError(
            f"expires_in must be between 1 and {MAX_PRESIGN_EXPIRES_IN} seconds,"
            f" got {expires_in}"
        )
    return expires_in


def _check_download_filename(filename: str | None) -> str | None:
    if filename is not None and (not isinstance(filename, str) or not filename.strip()):
        raise ValueError("download_filename must be a non-empty string or None")
    return filename


def content_disposition(filename: str | None) -> str:
    """The ``Content-Disposition`` for a download as ``filename`` (None: ``inline``).

    The result is pure ASCII: ``attachment; filename="<ascii fallback>"``, plus an
    RFC 6266 ``filename*=UTF-8''...`` parameter when the name is not plain ASCII.
    Quotes, backslashes, path separators and control characters are replaced.
    """
    if filename is None:
        return "inline"
    cleaned = "".join(
        "_" if ch in "/\\" else ch
        for ch in filename
        if unicodedata.category(ch) not in ("Cc", "Cf")
    ).strip()
    fallback = (
        unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode("ascii")
    )
    fallback = fallback.replace('"', "_").strip() or "download"
    value = f'attachment; filename="{fallback}"'
    if cleaned and fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


def _signature_payload(key: str, expires: int, filename: str | None) -> bytes:
    # JSON keeps the three fields unambiguous (no delimiter games, None != "").
    return json.dumps(
        ["easel-file-v1", key, expires, filename], separators=(",", ":")
    ).encode("utf-8", "surrogatepass")


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
    return hmac.compare_digest(
        expected.encode("ascii"), signature.encode("utf-8", "surrogatepass")
    )


# --------------------------------------------------------------------------- #
# S3
# --------------------------------------------------------------------------- #

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)


def _translate_s3_error(exc: Exception, operation: str, target: str) -> StorageError:
    """Map a boto3/botocore exception onto the storage error hierarchy."""
    where = f"S3 {operation} {target}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        status = int(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        )
        if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
            return ObjectNotFound(f"{where}: not found")
        if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
            return TransientStorageError(f"{where} failed: {code} ({status}) {message}")
        return StorageError(f"{where} failed: {code} ({status}) {message}")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
        # ConnectionClosedError, ResponseStreamingError, ...
        return TransientStorageError(f"{where} failed: {exc}")
    return StorageError(f"{where} failed: {exc}")


class S3ObjectStore:
    """Objects in one S3 (or S3-compatible) bucket, path-style addressing."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        public_endpoint_url: str | None = None,
        max_attempts: int = 5,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url or None
        self.public_endpoint_url = public_endpoint_url or None
        self._access_key_id = access_key_id or None
        self._secret_access_key = secret_access_key or None
        # A private session: building clients from boto3's default one is not
        # thread-safe.
        self._session = boto3.session.Session()
        self._client = self._make_client(
            self.endpoint_url,
            max_attempts=max_attempts,
            connect_timeout=5,
            read_timeout=30,
        )
        if self.public_endpoint_url and self.public_endpoint_url != self.endpoint_url:
            # SigV4 signs the Host header, so URLs meant for browsers must be
            # signed against the host the browser will actually talk to.
            # Presigning is purely local: this client never sends a request.
            self._presign_client = self._make_client(
                self.public_endpoint_url,
                max_attempts=max_attempts,
                connect_timeout=5,
                read_timeout=30,
            )
        else:
            self._presign_client = self._client
        self._probe_client: S3Client | None = None
        self._probe_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"
        )

    def _make_client(
        self,
        endpoint_url: str | None,
        *,
        max_attempts: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> S3Client:
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"},
            # botocore >= 1.36 adds CRC checksums to every upload by default,
            # which several S3-compatible servers reject; only send them when
            # an operation requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return self._session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self.region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            config=config,
        )

    def _probe(self) -> S3Client:
        """A no-retry, short-timeout client so that /readyz answers quickly."""
        with self._probe_lock:
            if self._probe_client is None:
                self._probe_client = self._make_client(
                    self.endpoint_url, max_attempts=1, connect_timeout=2, read_timeout=5
                )
            return self._probe_client

    # -- ObjectStore ------------------------------------------------------- #

    def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type or DEFAULT_CONTENT_TYPE,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate_s3_error(exc, "put", key) from exc

    def get(self, key: str) -> bytes:
        validate_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise _translate_s3_error(exc, "get", key) from exc

    def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = _translate_s3_error(exc, "head", key)
            if isinstance(error, ObjectNotFound):
                return False
            raise error from exc
        return True

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            # DeleteObject succeeds for missing keys, which is what we want.
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = _translate_s3_error(exc, "delete", key)
            if isinstance(error, ObjectNotFound):
                return
            raise error from exc

    def copy(self, src_key: str, dst_key: str) -> None:
        """Server-side CopyObject (up to 5 GB); metadata and content type are kept."""
        validate_key(src_key)
        validate_key(dst_key)
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=dst_key,
                CopySource={"Bucket": self.bucket, "Key": src_key},
                MetadataDirective="COPY",
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate_s3_error(exc, "copy", f"{src_key} -> {dst_key}") from exc

    def presigned_url(
        self, key: str, *, expires_in: int, download_filename: str | None = None
    ) -> str:
        validate_key(key)
        _check_expires_in(expires_in)
        _check_download_filename(download_filename)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition(download_filename),
        }
        try:
            return self._presign_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate_s3_error(exc, "presign", key) from exc

    def check(self) -> None:
        try:
            self._probe().head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            error = _translate_s3_error(exc, "head_bucket", self.bucket)
            if isinstance(error, ObjectNotFound):
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist") from exc
            raise error from exc

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except (ClientError, BotoCoreError) as exc:
            error = _translate_s3_error(exc, "head_bucket", self.bucket)
            if not isinstance(error, ObjectNotFound):
                raise error from exc
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=self.bucket)
            else:
                location = cast("BucketLocationConstraintType", self.region)
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": location},
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                return  # someone else (another replica) won the race
            raise _translate_s3_error(exc, "create_bucket", self.bucket) from exc
        except BotoCoreError as exc:
            raise _translate_s3_error(exc, "create_bucket", self.bucket) from exc


# --------------------------------------------------------------------------- #
# Local filesystem
# --------------------------------------------------------------------------- #


class LocalObjectStore:
    """Objects as files under ``root``.

    Layout: ``root/objects/<key>`` holds the bytes (see :meth:`path_for`),
    ``root/meta/<key>`` a small JSON document with the content type, and
    ``root/tmp`` the temporary files that :meth:`put` renames into place.
    Keeping the three trees apart means no key can collide with a sidecar.
    """

    def __init__(
        self, *, root: str | Path, signing_secret: str, public_base_url: str
    ) -> None:
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
        meta = json.dumps(
            {"content_type": content_type or DEFAULT_CONTENT_TYPE}
        ).encode()
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

    def presigned_url(
        self, key: str, *, expires_in: int, download_filename: str | None = None
    ) -> str:
        validate_key(key)
        _check_expires_in(expires_in)
        _check_download_filename(download_filename)
        expires = int(time.time()) + expires_in
        sig = _sign(self._signing_secret, key, expires, download_filename)
        path = quote(key, safe="/")
        url = f"{self.public_base_url}/v1/files/{path}?expires={expires}&sig={sig}"
        if download_filename is not None:
            url += f"&filename={quote(download_filename, safe='')}"
        return url

    def check(self) -> None:
        if not self._objects.is_dir():
            raise StorageError(
                f"local object store directory {str(self._objects)!r} is missing"
            )
        if not os.access(self._objects, os.R_OK | os.W_OK | os.X_OK):
            raise StorageError(
                f"local object store directory {str(self._objects)!r} is not writable"
            )

    def ensure_bucket(self) -> None:
        try:
            for directory in (self._objects, self._meta, self._tmp):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create local object store under {self.root}: {exc}"
            ) from exc


# --------------------------------------------------------------------------- #
# Factory
# --------------------------------------------------------------------------- #


def build_object_store(
    *,
    backend: str,
    local_dir: str,
    signing_secret: str,
    public_base_url: str,
    s3_endpoint_url: str | None,
    s3_bucket: str,
    s3_region: str,
    s3_access_key_id: str | None,
    s3_secret_access_key: str | None,
    s3_public_endpoint_url: str | None = None,
) -> ObjectStore:
    """Build the configured backend, ``"local"`` or ``"s3"`` (no network access)."""
    choice = (backend or "").strip().lower()
    if choice == "local":
        if not local_dir:
            raise ValueError("storage backend 'local' needs a local directory")
        return LocalObjectStore(
            root=local_dir,
            signing_secret=signing_secret,
            public_base_url=public_base_url,
        )
    if choice == "s3":
        return S3ObjectStore(
            endpoint_url=s3_endpoint_url or None,
            bucket=s3_bucket,
            region=s3_region,
            access_key_id=s3_access_key_id or None,
            secret_access_key=s3_secret_access_key or None,
            public_endpoint_url=s3_public_endpoint_url or None,
        )
    raise ValueError(f"unknown storage backend {backend!r}: expected 'local' or 's3'")
