"""A file that is still arriving, read by a decoder on another thread as it comes.

The request's reader (the api's event loop) adds each piece of the uploaded file as it arrives,
then hands over the whole file or abandons it; a decoder thread reads it like a file (``read``,
``seek``, ``tell``), waiting for bytes that have not come yet. The waiting is bounded: past the
deadline every read raises :class:`BodyTooSlow`, so a client that sends slowly holds the
decoder's thread and its share of the decode budget for no longer than that. Pieces are kept as
they arrive (no copy); a read copies out of them."""

from __future__ import annotations

import bisect
import io
import threading
import time
from typing import Literal


class BodyAbandoned(Exception):
    """The file will not arrive whole: the upload was refused or the client went away."""


class BodyTooSlow(BodyAbandoned):
    """The file did not arrive before the reader's deadline."""


class ArrivingBytes(io.RawIOBase):
    def __init__(self, deadline: float) -> None:
        """``deadline``: a ``time.monotonic()`` past which reads stop waiting."""
        super().__init__()
        self._deadline = deadline
        self._cond = threading.Condition()
        self._pieces: list[bytes] = []
        self._starts: list[int] = []  # offset of each piece in the file
        self._size = 0
        self._state: Literal["arriving", "whole", "abandoned"] = "arriving"
        self._whole: bytes | None = None
        self._pos = 0

    # ------------------------------------------------------------------ the receiving side

    def add(self, piece: bytes) -> None:
        """The next bytes of the file (kept, not copied: ``bytes`` cannot change)."""
        if not piece:
            return
        with self._cond:
            if self._state != "arriving":
                return
            self._starts.append(self._size)
            self._pieces.append(piece)
            self._size += len(piece)
            self._cond.notify_all()

    def finish(self, whole: bytes) -> None:
        """The file is complete: ``whole`` is every piece added, joined."""
        with self._cond:
            if self._state != "arriving":
                return
            if len(whole) != self._size:
                raise ValueError(f"the file has {len(whole)} bytes, {self._size} arrived")
            self._whole = whole
            self._state = "whole"
            self._cond.notify_all()

    def abandon(self) -> None:
        """The file will not be complete: every waiting and later read raises."""
        with self._cond:
            if self._state == "arriving":
                self._state = "abandoned"
                self._pieces, self._starts = [], []
                self._cond.notify_all()

    # ------------------------------------------------------------------ the decoding side

    def _wait_for(self, end: int) -> None:
        """Wait until ``end`` bytes have arrived or no more will. Called holding the lock."""
        while self._size < end and self._state == "arriving":
            self._wait_a_while()
        if self._state == "abandoned":
            raise BodyAbandoned("the file will not arrive")

    def _wait_whole(self) -> None:
        """Wait until every byte has arrived. Called holding the lock."""
        while self._state == "arriving":
            self._wait_a_while()
        if self._state == "abandoned":
            raise BodyAbandoned("the file will not arrive")

    def _wait_a_while(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise BodyTooSlow("the file did not arrive in time")
        self._cond.wait(remaining)

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer when the whole file is shorter), once they are here."""
        with self._cond:
            self._wait_for(n)
            return self._copy(0, min(n, self._size))

    def whole(self) -> bytes:
        """The complete file, once it is."""
        with self._cond:
            self._wait_whole()
            assert self._whole is not None
            return self._whole

    def _copy(self, start: int, end: int) -> bytes:
        """Bytes ``start:end`` (arrived), copied once. Called holding the lock."""
        if start >= end:
            return b""
        if self._whole is not None:
            return self._whole[start:end]
        i = bisect.bisect_right(self._starts, start) - 1
        views = []
        while start < end:
            piece, offset = self._pieces[i], self._starts[i]
            view = memoryview(piece)[start - offset : end - offset]
            views.append(view)
            start += len(view)
            i += 1
        return views[0].tobytes() if len(views) == 1 else b"".join(views)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes, fewer only when the file ends first (decoders read a short read as
        its end); all the rest when ``size`` is negative or None."""
        with self._cond:
            if size is None or size < 0:
                self._wait_whole()
                end = self._size
            else:
                self._wait_for(self._pos + size)
                end = min(self._pos + size, self._size)
            data = self._copy(self._pos, end)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            with self._cond:
                self._wait_whole()
                offset += self._size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise OSError("negative seek position")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos
