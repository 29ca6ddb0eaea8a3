"""Running one generation. The database row is the truth; the broker only carries its id.

1. Lease: a compare-and-set `queued -> running` with a fresh lease token. A message delivered
   twice finds the row no longer queued and does nothing.
2. Work: load references, call the model (heartbeats meanwhile; cancel is cooperative),
   write the output to storage. Transient failures retry with backoff; permanent ones fail.
3. Settle: under the board lock, only the holder of the lease may finish the row, and the
   credit capture/release happens in that same transaction, so it happens exactly once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from easel_shared import events, lifecycle, tasks, webhooks
from easel_shared.clock import as_utc, utcnow
from easel_shared.db import session_scope
from easel_shared.domain.catalog import output_size
from easel_shared.domain.generation import run_blocker
from easel_shared.ids import new_id
from easel_shared.images import store_image
from easel_shared.imaging import ImageRejected, inspect_with_thumbnail
from easel_shared.logs import generation_id_var, request_id_var
from easel_shared.messages import RetainImage
from easel_shared.models import Generation, Image, Node
from easel_shared.repositories import boards as repo
from easel_shared.repositories import generations as generations_repo
from easel_shared.repositories import outbox
from easel_shared.storage import StorageError, TransientStorageError
from easel_shared.views import generation_view
from easel_worker.metrics import GENERATIONS, MODEL_SECONDS
from easel_worker.models.base import GenerationInput, JobHooks, ModelError
from easel_worker.models.registry import provider_for
from easel_worker.models.vendors import VendorOptions
from easel_worker.runtime import Runtime

log = logging.getLogger(__name__)

STORAGE_TRIES = 4
LEASE_TRIES = 3
_DATABASE_HICCUPS = (OperationalError, InterfaceError, PoolTimeout)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def acquire(rt: Runtime, generation_id: str) -> tuple[str, Generation] | None:
    """The lease token and a detached snapshot of the row, or None when it is not queued."""
    token = secrets.token_hex(8)
    with session_scope(rt.engine) as session:
        # The board first, as every writer that stages its events does: its event seq is taken
        # under that lock, and one order of locks (board, then generation) keeps clear of deadlocks.
        repo.lock_board_of_generation(session, generation_id)
        gen = generations_repo.lease(session, generation_id, token)
        if gen is None:
            return None
        events.stage(session, gen.board_id, "generation.started", generation_view(gen))
        webhooks.emit_generation(session, gen, rt.base_url)
    # Detached by the session's close with every column loaded (the UPDATE returned them all, and
    # commits do not expire them): the run reads it, nothing writes it.
    return token, gen


class _Heartbeat(threading.Thread):
    """Keeps `heartbeat_at` fresh while we hold the lease, and notices cancellation."""

    def __init__(self, rt: Runtime, generation_id: str, token: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{generation_id}")
        self.rt, self.generation_id, self.token = rt, generation_id, token
        self.done = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.rt.settings.heartbeat_interval_seconds):
            try:
                with session_scope(self.rt.engine) as session:
                    if not generations_repo.heartbeat(session, self.generation_id, self.token):
                        self.lost.set()
                        return
            except Exception:
                log.warning("heartbeat failed for %s", self.generation_id, exc_info=True)


def _cancel_requested(rt: Runtime, generation_id: str, hb: _Heartbeat) -> bool:
    if hb.lost.is_set():
        return True
    try:
        return bool(rt.redis.exists(lifecycle.CANCEL_KEY.format(generation_id)))
    except Exception:
        return False


def _with_retries(fn: Any, tries: int, transient: tuple[type[BaseException], ...], should_stop: Any) -> Any:
    delay = 0.2
    for attempt in range(1, tries + 1):
        try:
            return fn()
        except transient as exc:
            if attempt == tries or should_stop():
                raise
            log.warning("transient failure (attempt %d/%d): %s", attempt, tries, exc)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def run(rt: Runtime, generation_id: str) -> None:
    gen_token = generation_id_var.set(generation_id)
    try:
        _run(rt, generation_id)
    finally:
        generation_id_var.reset(gen_token)


def _lease(rt: Runtime, generation_id: str) -> tuple[str, Generation] | None:
    """`acquire`, retried through a short database hiccup (a pool timeout, a dropped connection).
    If it still fails, the message is spent (Celery acknowledges failed tasks) while the row stays
    `queued`: drop the sent marker so the sweeper sends it again within `REQUEUE_AFTER_SECONDS`."""
    try:
        for attempt in Retrying(retry=retry_if_exception_type(_DATABASE_HICCUPS), stop=stop_after_attempt(LEASE_TRIES),
                                wait=wait_exponential(multiplier=0.25, max=2), reraise=True):
            with attempt:
                return acquire(rt, generation_id)
    except Exception:
        log.warning("generation %s could not be leased; the sweeper will send it again", generation_id)
        tasks.forget_sent(rt.redis, generation_id)
        raise
    raise AssertionError("unreachable")


def _run(rt: Runtime, generation_id: str) -> None:
    leased = _lease(rt, generation_id)
    if leased is None:
        log.info("generation %s is not queued; nothing to do", generation_id)
        return
    token, snapshot = leased
    # The api request that asked for this generation: its id follows the work into these logs.
    req_token = request_id_var.set(snapshot.request_id)
    try:
        _work(rt, generation_id, token, snapshot)
    finally:
        request_id_var.reset(req_token)


def _work(rt: Runtime, generation_id: str, token: str, snapshot: Generation) -> None:
    log.info("generation %s running (attempt %s, model %s)", generation_id, snapshot.attempts, snapshot.model_id)
    blocker = run_blocker(rt.catalog.get(snapshot.model_id), snapshot.params, len(snapshot.reference_image_ids))
    if blocker is not None:
        # The api checked these rules at accept; the catalog may have changed since.
        _settle_failed(rt, generation_id, token, *blocker, {})
        return
    hb = _Heartbeat(rt, generation_id, token)
    hb.start()
    timings: dict[str, int] = {}
    started = time.perf_counter()
    try:
        timings["queue_wait_ms"] = _ms(as_utc(snapshot.started_at or utcnow()).timestamp()
                                       - as_utc(snapshot.created_at).timestamp())
        model_s, storage_s, image = _produce(rt, snapshot, lambda: _cancel_requested(rt, generation_id, hb),
                                             _RowHooks(rt, snapshot, token))
        timings["model_ms"], timings["storage_ms"] = _ms(model_s), _ms(storage_s)
    except ModelError as exc:
        hb.done.set()
        timings["total_ms"] = timings.get("queue_wait_ms", 0) + _ms(time.perf_counter() - started)
        if exc.code == "canceled":
            _settle_canceled(rt, generation_id, token, timings)
        else:
            _settle_failed(rt, generation_id, token, exc.code, exc.message, timings)
        return
    except (StorageError, ImageRejected) as exc:
        hb.done.set()
        timings["total_ms"] = timings.get("queue_wait_ms", 0) + _ms(time.perf_counter() - started)
        code = "storage_error" if isinstance(exc, StorageError) else "model_error"
        _settle_failed(rt, generation_id, token, code, "The image could not be stored." if code == "storage_error"
                       else "The model returned an unreadable image.", timings)
        return
    finally:
        hb.done.set()
    timings["total_ms"] = timings.get("queue_wait_ms", 0) + _ms(time.perf_counter() - started)
    _settle_succeeded(rt, generation_id, token, image, timings)


class _RowHooks(JobHooks):
    """Vendor jobs and progress, kept on the generation row by the lease holder."""

    PROGRESS_EVERY_SECONDS = 1.0

    def __init__(self, rt: Runtime, gen: Generation, token: str) -> None:
        self.rt, self.generation_id, self.board_id, self.token = rt, gen.id, gen.board_id, token
        self.resumed = gen.vendor_job
        self._last: tuple[int | None, float | None] | None = None
        self._last_at = 0.0

    def save(self, job: Mapping[str, Any]) -> None:
        with session_scope(self.rt.engine) as session:
            saved = generations_repo.save_vendor_job(session, self.generation_id, self.token, dict(job))
        if saved:
            log.info("generation %s: %s job %s accepted", self.generation_id, job.get("provider"), job.get("id"))
        else:
            log.warning("generation %s: lease lost before the %s job %s was recorded", self.generation_id,
                        job.get("provider"), job.get("id"))

    def progress(self, queue_position: int | None, percentage: float | None) -> None:
        """At most one write and one ``generation.progress`` event per second, and only on change."""
        now = time.monotonic()
        current = (queue_position, None if percentage is None else round(min(1.0, max(0.0, percentage)), 3))
        if current == self._last or now - self._last_at < self.PROGRESS_EVERY_SECONDS:
            return
        self._last, self._last_at = current, now
        try:
            with session_scope(self.rt.engine) as session:
                repo.lock_board(session, self.board_id)  # board, then generation (see `acquire`)
                gen = generations_repo.save_progress(session, self.generation_id, self.token,
                                                     {"queue_position": current[0], "percentage": current[1]})
                if gen is not None:
                    events.stage(session, gen.board_id, "generation.progress", generation_view(gen))
        except Exception:
            log.warning("could not record progress of %s", self.generation_id, exc_info=True)


def _produce(rt: Runtime, gen: Generation, should_cancel: Any, hooks: JobHooks) -> tuple[float, float, Image]:
    spec = rt.catalog.get(gen.model_id)
    assert spec is not None  # run_blocker refused unknown models before the work began
    width, height = output_size(str(gen.params["resolution"]), str(gen.params["aspect_ratio"]))
    t0 = time.perf_counter()
    ref_images: dict[str, Image] = {}
    if gen.reference_image_ids:
        with session_scope(rt.engine) as session:
            ref_images = repo.images_by_id(session, gen.reference_image_ids)
    references = [
        _with_retries(lambda k=ref_images[i].storage_key: rt.store.get(k), STORAGE_TRIES,
                      (TransientStorageError,), should_cancel)
        for i in gen.reference_image_ids if i in ref_images
    ]
    storage_s = time.perf_counter() - t0
    provider = provider_for(spec, latency_ms=rt.settings.builtin_model_latency_ms,
                            blocked_words=rt.settings.blocked_words,
                            vendor_options=VendorOptions(poll_seconds=rt.settings.vendor_poll_seconds,
                                                         deadline_seconds=rt.settings.generation_timeout_seconds))
    inp = GenerationInput(prompt=gen.prompt, width=width, height=height, seed=int(gen.params.get("seed") or 0),
                          references=references, model=spec, job=hooks)
    t1 = time.perf_counter()
    try:
        # Providers own their retries (the HTTP adapter backs off on timeouts and 5xx); a
        # ModelError that reaches here is final, so retrying again would only multiply calls.
        data = provider.generate(inp, should_cancel=should_cancel)
    finally:
        MODEL_SECONDS.labels(gen.model_id).observe(time.perf_counter() - t1)
    model_s = time.perf_counter() - t1
    if should_cancel() and not _node_deleted(rt, gen):
        # Canceled while the model worked: skip storing. A result whose node was deleted meanwhile
        # is still stored, for the account's library ("late_result", see _settle_succeeded).
        raise ModelError("canceled", "The generation was canceled.", transient=False)
    t2 = time.perf_counter()
    # One decode checks the model's output and renders its thumbnail (counted as storage work,
    # as the thumbnail always was).
    info, thumbnail = inspect_with_thumbnail(data)
    image = _with_retries(lambda: store_image(rt.store, gen.account_id, data, info, "generation",
                                              thumbnail=thumbnail),
                          STORAGE_TRIES, (TransientStorageError,), lambda: False)
    storage_s += time.perf_counter() - t2
    return model_s, storage_s, image


def _node_deleted(rt: Runtime, gen: Generation) -> bool:
    with session_scope(rt.engine) as session:
        return session.get(Node, gen.node_id) is None


def _locked_generation(session: Session, generation_id: str) -> Generation | None:
    """The generation and its node, read under its board's lock (on PostgreSQL two statements: the
    lock finds the board)."""
    repo.lock_board_of_generation(session, generation_id)
    return generations_repo.get_with_node(session, generation_id)


def _settle_succeeded(rt: Runtime, generation_id: str, token: str, image: Image, timings: dict[str, int]) -> None:
    with session_scope(rt.engine) as session:
        kept = _settle_succeeded_in_tx(session, rt, generation_id, token, image, timings)
    if not kept:
        _discard(rt, image)


def _settle_succeeded_in_tx(session: Session, rt: Runtime, generation_id: str, token: str, image: Image,
                            timings: dict[str, int]) -> bool:
    """True when a row now points at `image`."""
    gen = _locked_generation(session, generation_id)
    if gen is None:
        return False
    if gen.status == "running" and gen.lease_token == token:
        session.add(image)
        gen.timings = timings
        lifecycle.end_generation(session, gen, "succeeded", base_url=rt.base_url, image_id=image.id)
        GENERATIONS.labels("succeeded").inc()
        return True
    # Canceled (or taken over) while we worked: the result is discarded, unless the node is
    # gone, in which case the image lands in the library ("late_result").
    if gen.status == "canceled" and session.get(Node, gen.node_id) is None and gen.image_id is None:
        session.add(image)
        gen.image_id = image.id
        gen.timings = timings
        session.add(gen)
        outbox.enqueue(session, RetainImage(asset_id=new_id("ast"), image_id=image.id, board_id=gen.board_id,
                                            node_id=gen.node_id, reason="late_result"), gen.account_id)
        log.info("generation %s finished after its node was deleted; kept as late_result", generation_id)
        return True
    return False


def _discard(rt: Runtime, image: Image) -> None:
    """Best effort: no row points at these objects, so nothing would ever read them."""
    for key in (image.storage_key, image.thumbnail_key):
        try:
            rt.store.delete(key)
        except StorageError:
            log.warning("could not delete unused object %s", key, exc_info=True)


def _settle_failed(rt: Runtime, generation_id: str, token: str, code: str, message: str,
                   timings: dict[str, int]) -> None:
    with session_scope(rt.engine) as session:
        gen = _locked_generation(session, generation_id)
        if gen is None or gen.status != "running" or gen.lease_token != token:
            return
        gen.timings = timings
        lifecycle.end_generation(session, gen, "failed", base_url=rt.base_url, error_code=code, error_message=message)
        GENERATIONS.labels("failed").inc()


def _settle_canceled(rt: Runtime, generation_id: str, token: str,
                     timings: dict[str, int]) -> None:
    with session_scope(rt.engine) as session:
        gen = _locked_generation(session, generation_id)
        if gen is None:
            return
        if gen.status == "running" and gen.lease_token == token:
            # The cancel key was seen before the api committed; finish the cancel ourselves.
            gen.timings = timings
            lifecycle.end_generation(session, gen, "canceled", base_url=rt.base_url)
        GENERATIONS.labels("canceled").inc()
