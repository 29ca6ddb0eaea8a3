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

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor

from prometheus_client import Counter, Gauge
from starlette.requests import Request

from easel_api.upload import read_upload
from easel_shared.imaging import ImageInfo, ImageRejected
from easel_shared.imaging.arriving import ArrivingBytes, BodyAbandoned, BodyTooSlow
from easel_shared.imaging.transform import inspect_with_thumbnail_while_arriving
from easel_shared.imaging.validate import NotStreamable

log = logging.getLogger(__name__)

#: The image's description, and its thumbnail as it renders on the decoder's thread (None from
#: it: the thumbnail could not be rendered there; render it from the bytes).
Inspected = tuple[ImageInfo, "Future[bytes | None]"]

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

    def __init__(self, body: ArrivingBytes, decoded: Future[ImageInfo | None], thumbnail: Future[bytes | None]) -> None:
        self._body = body
        self._decoded = decoded
        self._thumbnail = thumbnail
        # The decoder's task answers before it ends; one canceled before it ran (the api
        # stopping) never does, and its upload is validated the usual way.
        thumbnail.add_done_callback(self._ended)

    def _ended(self, _: Future[bytes | None]) -> None:
        with contextlib.suppress(InvalidStateError):
            self._decoded.set_result(None)

    def add(self, piece: bytes) -> None:
        self._body.add(piece)

    def finish(self, whole: bytes) -> None:
        self._body.finish(whole)

    def abandon(self) -> None:
        self._body.abandon()

    def result(self) -> Inspected | None:
        """The upload's description as soon as it is known valid, with its thumbnail still
        rendering; or None: validate it the usual way."""
        info = self._decoded.result()
        return None if info is None else (info, self._thumbnail)


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
            decoded: Future[ImageInfo | None] = Future()
            return EarlyDecode(body, decoded, self._pool.submit(self._decode, body, decoded))
        except BaseException:
            EARLY_DECODES_RUNNING.dec()
            self._slots.release()
            raise

    def _decode(self, body: ArrivingBytes, decoded: Future[ImageInfo | None]) -> bytes | None:
        """Answers through ``decoded`` as soon as the image is known valid (the request goes on
        with its transaction), then renders the thumbnail, which it returns."""
        # Whatever goes wrong before the answer is decided again, the usual way, if the body
        # arrives whole.
        outcome = "rejected"

        def answer(info: ImageInfo) -> None:
            nonlocal outcome
            outcome = "decoded"
            decoded.set_result(info)

        try:
            _, thumbnail = inspect_with_thumbnail_while_arriving(body, max_pixels=self._max_pixels, on_decoded=answer)
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
            log.warning("an upload's early decode failed; the request decodes it again", exc_info=True)
        else:
            return thumbnail
        finally:
            if not decoded.done():
                decoded.set_result(None)
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
