"""Decoding an upload while its body arrives.

An upload is validated by decoding it whole (``easel_shared.imaging``). Decoded only once the
body has arrived, the decode waits for the last byte; decoded as the bytes come, it is mostly
done by then, and the upload answers about a body's transfer time sooner (``bench/upload.py``).

This is an optimisation only, and it can only say yes: an upload whose early decode fails for
any reason (a broken or WebP file, a head too long to read early, a body that is refused, cut
off, or slower than the window) is validated again the usual way once its body is whole, so
every refusal is exactly the usual one.

What a slow client can hold: one of ``UPLOAD_EARLY_DECODES`` threads (when all are busy, the
next uploads are decoded the usual way) and, once its header is read, its share of the decode
memory budget, each for at most ``UPLOAD_EARLY_DECODE_WINDOW_SECONDS``, after which its decode
is dropped. Only bodies that declare their length are decoded early, so a chunked body refused
as too large never started a decode."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from prometheus_client import Counter, Gauge
from starlette.requests import Request

from easel_api.upload import read_upload
from easel_shared.imaging import ImageInfo, ImageRejected
from easel_shared.imaging.arriving import ArrivingBytes, BodyAbandoned, BodyTooSlow
from easel_shared.imaging.transform import inspect_with_thumbnail_while_arriving
from easel_shared.imaging.validate import NotStreamable

log = logging.getLogger(__name__)

Inspected = tuple[ImageInfo, bytes]  # the image's description and its thumbnail

EARLY_DECODES = Counter(
    "easel_upload_early_decodes_total",
    "Uploads by what their decode while the body arrived gave: decoded (its answer was used); "
    "no_length, no_slot (not tried); not_streamable (WebP), rejected, too_slow (validated again once "
    "the body was whole); abandoned (the body was refused or cut off)",
    ["outcome"],
)
EARLY_DECODES_RUNNING = Gauge("easel_upload_early_decodes_running",
                              "Uploads being decoded while their body arrives (at most UPLOAD_EARLY_DECODES)")


class EarlyDecode:
    """One upload's decode, running while its file arrives."""

    def __init__(self, body: ArrivingBytes, result: Future[Inspected | None]) -> None:
        self._body = body
        self._result = result

    def add(self, piece: bytes) -> None:
        self._body.add(piece)

    def finish(self, whole: bytes) -> None:
        self._body.finish(whole)

    def abandon(self) -> None:
        self._body.abandon()

    def result(self) -> Inspected | None:
        """The upload's description and thumbnail, or None: validate it the usual way."""
        return self._result.result()


class EarlyDecoder:
    def __init__(self, slots: int, window_seconds: float, max_pixels: int) -> None:
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="upload-decode") if slots > 0 else None
        self._window = window_seconds
        self._max_pixels = max_pixels

    def start(self, request: Request) -> EarlyDecode | None:
        """An early decode of this upload, or None (no declared length, or every slot busy)."""
        if self._slots is None or self._pool is None:
            return None
        if not request.headers.get("content-length", "").isdigit():
            EARLY_DECODES.labels("no_length").inc()
            return None
        if not self._slots.acquire(blocking=False):
            EARLY_DECODES.labels("no_slot").inc()
            return None
        EARLY_DECODES_RUNNING.inc()
        try:
            body = ArrivingBytes(time.monotonic() + self._window)
            return EarlyDecode(body, self._pool.submit(self._decode, body))
        except BaseException:
            EARLY_DECODES_RUNNING.dec()
            self._slots.release()
            raise

    def _decode(self, body: ArrivingBytes) -> Inspected | None:
        # Whatever goes wrong is decided again, the usual way, if the body arrives whole.
        outcome = "rejected"
        try:
            inspected = inspect_with_thumbnail_while_arriving(body, max_pixels=self._max_pixels)
            outcome = "decoded"
        except NotStreamable:
            outcome = "not_streamable"
        except (ImageRejected, BodyAbandoned) as exc:
            # The reader's end may surface through the decoder, as the cause of a rejection.
            cause = exc if isinstance(exc, BodyAbandoned) else exc.__cause__
            if isinstance(cause, BodyTooSlow):
                outcome = "too_slow"
            elif isinstance(cause, BodyAbandoned):
                outcome = "abandoned"
        except Exception:
            log.warning("an upload's early decode failed; it is validated the usual way", exc_info=True)
        else:
            return inspected
        finally:
            EARLY_DECODES.labels(outcome).inc()
            body.abandon()  # nothing of the file is kept here once the decode is over
            assert self._slots is not None
            EARLY_DECODES_RUNNING.dec()
            self._slots.release()
        return None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


async def read_upload_decoding(request: Request, decoder: EarlyDecoder | None) -> tuple[bytes, EarlyDecode | None]:
    """:func:`~easel_api.upload.read_upload`, with the file decoded as it arrives when
    ``decoder`` has a slot free: (the file's bytes, its decode or None)."""
    early = decoder.start(request) if decoder is not None else None
    if early is None:
        return await read_upload(request), None
    try:
        data = await read_upload(request, on_file_piece=early.add)
    except BaseException:
        early.abandon()
        raise
    early.finish(data)
    return data, early
