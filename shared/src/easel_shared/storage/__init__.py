"""Object storage for Easel: one small interface, two backends.

* :class:`S3ObjectStore` (:mod:`.s3`) talks to S3 or any S3-compatible server (MinIO in
  docker-compose, moto in tests) through boto3.
* :class:`LocalObjectStore` (:mod:`.local`) keeps objects as plain files under a root
  directory. It is meant for development and single-node setups; its "presigned" URLs point
  at a tiny ``GET /v1/files/{key:path}`` route that the api and assets services mount and
  which checks the URL with :func:`verify_signed_url` before serving ``path_for(key)``.

Both backends accept the same keys (see :func:`validate_key`), so code written against
:class:`ObjectStore` behaves the same on either.

This package must stay free of web-framework imports: the Celery worker uses it.
"""

from easel_shared.storage.base import DEFAULT_CONTENT_TYPE, MAX_PRESIGN_EXPIRES_IN, ListedObject, ObjectStore
from easel_shared.storage.errors import ObjectNotFound, StorageError, TransientStorageError
from easel_shared.storage.factory import build_object_store, store_from_settings
from easel_shared.storage.keys import content_disposition, validate_key
from easel_shared.storage.local import LocalObjectStore, verify_signed_url
from easel_shared.storage.s3 import S3ObjectStore

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_PRESIGN_EXPIRES_IN",
    "ListedObject",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageError",
    "TransientStorageError",
    "build_object_store",
    "content_disposition",
    "store_from_settings",
    "validate_key",
    "verify_signed_url",
]
