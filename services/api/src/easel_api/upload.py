"""Streaming multipart reader for uploads. The 10 MiB limit is enforced while the body arrives:
reading stops at the first byte past the limit, so an oversized upload never sits whole in
memory (Starlette's form parser would spool the whole body first)."""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from easel_shared.domain import errors
from easel_shared.imaging import MAX_UPLOAD_BYTES

# Multipart framing (boundaries, part headers, other small fields) allowed beyond the file.
_FRAMING_ALLOWANCE = 64 * 1024


class _FileCollector:
    def __init__(self, field: str) -> None:
        self.field = field
        self.buf = bytearray()
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

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

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
            self.buf += data[start:end]
            if len(self.buf) > MAX_UPLOAD_BYTES:
                raise errors.FileTooLarge()


async def read_upload(request: Request, field: str = "file") -> bytes:
    content_type = request.headers.get("content-type", "")
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise errors.InvalidField("Send the image as multipart/form-data with a field named 'file'.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES + _FRAMING_ALLOWANCE:
        raise errors.FileTooLarge()
    collector = _FileCollector(field)
    callbacks = {
        "on_part_begin": collector.on_part_begin,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_part_data": collector.on_part_data,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > MAX_UPLOAD_BYTES + _FRAMING_ALLOWANCE:
            raise errors.FileTooLarge()
        parser.write(chunk)
    parser.finalize()
    if not collector.found:
        raise errors.InvalidField("The multipart body has no field named 'file'.")
    return bytes(collector.buf)
