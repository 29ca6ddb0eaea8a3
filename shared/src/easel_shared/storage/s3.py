"""Objects in an S3 (or S3-compatible) bucket, through boto3."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from easel_shared.storage.base import DEFAULT_CONTENT_TYPE, ListedObject
from easel_shared.storage.errors import ObjectNotFound, StorageError, TransientStorageError
from easel_shared.storage.keys import (
    check_download_filename,
    check_expires_in,
    content_disposition,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

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
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
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
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

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

    def list_keys(self, prefix: str) -> Iterator[ListedObject]:
        """ListObjectsV2 page by page (1000 keys each), so a large bucket is never held at once."""
        validate_prefix(prefix)
        return self._list_pages(prefix)

    def _list_pages(self, prefix: str) -> Iterator[ListedObject]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    if "Key" in item and "LastModified" in item:
                        yield ListedObject(item["Key"], item["LastModified"].astimezone(UTC))
        except (ClientError, BotoCoreError) as exc:
            raise _translate_s3_error(exc, "list", prefix or "(all)") from exc

    def presigned_url(self, key: str, *, expires_in: int, download_filename: str | None = None) -> str:
        validate_key(key)
        check_expires_in(expires_in)
        check_download_filename(download_filename)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition(download_filename),
        }
        try:
            return self._presign_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
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
