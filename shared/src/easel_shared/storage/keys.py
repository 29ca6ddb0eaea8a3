"""Checks and header values shared by both backends (and by the /v1/files routes)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from easel_shared.storage.base import MAX_PRESIGN_EXPIRES_IN

_MAX_KEY_BYTES = 1024  # S3's limit on key length (UTF-8 bytes)


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
            raise ValueError(f"object key must not contain empty, '.' or '..' segments, got {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a valid key (``""``, ``"images/"``, ``"images/acc"``),
    else raise ``ValueError``: the same rules as :func:`validate_key`, a trailing ``/`` allowed."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str):
        raise ValueError("object key prefix must be a string")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an int number of seconds")
    if not 1 <= expires_in <= MAX_PRESIGN_EXPIRES_IN:
        raise ValueError(f"expires_in must be between 1 and {MAX_PRESIGN_EXPIRES_IN} seconds, got {expires_in}")
    return expires_in


def check_download_filename(filename: str | None) -> str | None:
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
        "_" if ch in "/\\" else ch for ch in filename if unicodedata.category(ch) not in ("Cc", "Cf")
    ).strip()
    fallback = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode("ascii")
    fallback = fallback.replace('"', "_").strip() or "download"
    value = f'attachment; filename="{fallback}"'
    if cleaned and fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value
