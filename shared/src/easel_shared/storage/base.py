"""The object store interface and the constants both backends share."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: SigV4 presigned URLs cannot live longer than seven days; both backends use
#: the same bound so callers see the same behaviour everywhere.
MAX_PRESIGN_EXPIRES_IN = 7 * 24 * 3600


class ListedObject(NamedTuple):
    """One stored object as :meth:`ObjectStore.list_keys` reports it."""

    key: str
    #: When the object was last written (aware, UTC): S3's ``LastModified``, a file's mtime.
    last_modified: datetime


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

    def list_keys(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with ``prefix`` (a plain string prefix as on S3, so
        ``"images/a"`` matches ``"images/ab/x"``; ``""`` lists everything), in no particular
        order, read lazily. Objects written or deleted while the listing runs may or may not
        appear. ``ValueError`` (at once) for a prefix that breaks the key rules,
        :class:`StorageError` while iterating when the store fails."""
        ...

    def presigned_url(self, key: str, *, expires_in: int, download_filename: str | None = None) -> str:
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
