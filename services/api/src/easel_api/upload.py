"""Streaming multipart reader for uploads. The 10 MiB limit is enforced while the body arrives:
reading stops at the first byte past the limit, so an oversized upload never sits whole in
memory (Starlette's form parser would spool the whole body first), and a refused body leaves
nothing behind (at most the limit is held while reading). A body that is not well-formed
multipart (bad boundary, a part header without a colon, no closing boundary) is `400
invalid_multipart`.

The file's bytes are copied once: the chunks the server hands over are kept as they are (a
chunk is file data from end to end almost every time) and joined when the body ends."""

from __future__ import annotations

import re
from collections.abc import Callable

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from easel_shared.domain import errors
from easel_shared.http_limits import lift_body_limit
from easel_shared.imaging import MAX_UPLOAD_BYTES

# Multipart framing (boundaries, part headers, other small fields) allowed beyond the file.
_FRAMING_ALLOWANCE = 64 * 1024
_MAX_PART_HEADER_BYTES = 8 * 1024
# RFC 2046 section 5.1.1: 1 to 70 characters from this set, not ending with a space.
_BOUNDARY_RE = re.compile(rb"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class _FileCollector:
    def __init__(self, field: str, on_piece: Callable[[bytes], None] | None = None) -> None:
        self.field = field
        self.on_piece = on_piece
        self.parts: list[bytes] = []
        self.size = 0
        self.found = False
        self._in_target = False
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""

    def on_part_begin(self) -> None:
        self._in_target = False
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        self._check_header()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_field) + len(self._header_value) > _MAX_PART_HEADER_BYTES:
            raise errors.InvalidMultipart(f"A part header is longer than {_MAX_PART_HEADER_BYTES:,} bytes.")

    def on_header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._disposition)
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if name == self.field and not self.found:
            self._in_target = True
            self.found = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_target:
            self.size += end - start
            if self.size > MAX_UPLOAD_BYTES:
                self.parts.clear()  # nothing of a refused body is kept
                raise errors.FileTooLarge()
            # A whole chunk (the usual case) is kept without a copy: bytes are immutable.
            piece = data if start == 0 and end == len(data) and type(data) is bytes else bytes(data[start:end])
            self.parts.append(piece)
            if self.on_piece is not None:
                self.on_piece(piece)

    def content(self) -> bytes:
        """The file's bytes: the one copy of the upload (joining the chunks)."""
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = []
        return data


def _boundary(content_type: str) -> bytes:
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        raise errors.InvalidField("Send the image as multipart/form-data with a field named 'file'.")
    boundary = params.get(b"boundary")
    if boundary is None:
        raise errors.InvalidMultipart("The Content-Type header names no multipart boundary.")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise errors.InvalidMultipart(
            "The multipart boundary must be 1 to 70 letters, digits or ' ()+_,-./:=? characters (RFC 2046).")
    return boundary


async def read_upload(request: Request, field: str = "file",
                      on_file_piece: Callable[[bytes], None] | None = None) -> bytes:
    """The bytes of the multipart field ``field``; ``on_file_piece`` sees each piece of them as it
    arrives (the pieces it is given are the ones joined at the end)."""
    boundary = _boundary(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + _FRAMING_ALLOWANCE:
        raise errors.FileTooLarge()
    lift_body_limit(request)  # this reader enforces the upload limit itself, as the body arrives
    collector = _FileCollector(field, on_file_piece)
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > MAX_UPLOAD_BYTES + _FRAMING_ALLOWANCE:
                raise errors.FileTooLarge()
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise errors.InvalidMultipart(f"The multipart body is malformed: {_reason(exc)}") from None
    if parser.state != MultipartState.END:
        raise errors.InvalidMultipart("The multipart body ends before its closing boundary.")
    if not collector.found:
        raise errors.InvalidField("The multipart body has no field named 'file'.")
    return collector.content()


def _reason(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".") or "it does not parse"
    return (text if len(text) <= 200 else text[:199] + "\u2026") + "."
