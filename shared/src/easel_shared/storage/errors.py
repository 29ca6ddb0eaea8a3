"""The storage error hierarchy every backend raises."""

from __future__ import annotations


class StorageError(Exception):
    """The object store failed or refused an operation."""


class TransientStorageError(StorageError):
    """May go away on retry: 5xx, throttling, timeouts, connection errors."""


class ObjectNotFound(StorageError):
    """The requested object does not exist."""
