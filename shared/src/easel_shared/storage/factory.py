"""Building the configured object store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from easel_shared.storage.base import ObjectStore
from easel_shared.storage.local import LocalObjectStore
from easel_shared.storage.s3 import S3ObjectStore

if TYPE_CHECKING:
    from easel_shared.settings import Settings


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


def store_from_settings(settings: Settings, public_base_url: str) -> ObjectStore:
    """The store ``settings`` configure; with the local backend, signed links point at
    ``public_base_url`` (the service whose ``/v1/files`` route serves them)."""
    return build_object_store(
        backend=settings.storage_backend,
        local_dir=settings.local_storage_dir,
        signing_secret=settings.url_signing_secret or "",
        public_base_url=public_base_url.rstrip("/"),
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_bucket=settings.s3_bucket,
        s3_region=settings.s3_region,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=settings.s3_secret_access_key,
        s3_public_endpoint_url=settings.s3_public_endpoint_url,
    )
