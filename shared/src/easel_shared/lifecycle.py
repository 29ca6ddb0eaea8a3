"""Ending a generation, shared by the api (cancel, node deletion, upload) and the worker
(success, failure, sweeper). Each call runs inside the caller's transaction, under the lock of
the generation's board; what waited for the generation (`easel_shared.upstream`, same board) is
settled in that transaction too."""

from __future__ import annotations

import redis
from sqlmodel import Session

from easel_shared import events, node_updates, scheduler, upstream, webhooks
from easel_shared.clock import utcnow
from easel_shared.models import Generation, Node
from easel_shared.repositories import accounts, boards
from easel_shared.views import generation_view

CANCEL_KEY = "easel:cancel:{}"


def signal_cancel(client: redis.Redis, generation_id: str) -> None:
    """A hint for a running worker to stop early; the database row stays the truth."""
    try:
        client.set(CANCEL_KEY.format(generation_id), "1", ex=3600)
    except redis.RedisError:
        pass


def end_generation(
    session: Session,
    gen: Generation,
    status: str,
    *,
    base_url: str,
    error_code: str | None = None,
    error_message: str | None = None,
    image_id: str | None = None,
    node_status_after_cancel: str | None = None,
    publish_node: bool = True,
    settle_waiters: bool = True,
) -> None:
    """Move an active (queued/running) generation to a final status, settle its credits exactly
    once, and update its node. Callers must hold the row (CAS or lock) so this runs once.

    Generations waiting for it (`after_upstream`) are released when it succeeded, else canceled
    (refunded), and so on down the chain (`_settle_waiters`)."""
    assert gen.status in ("queued", "running"), gen.status
    held_slot = gen.dispatched_at is not None
    now = utcnow()
    gen.status = status
    gen.finished_at = now
    gen.active_node_id = None
    gen.lease_token = None
    gen.error_code = error_code
    gen.error_message = error_message
    if image_id:
        gen.image_id = image_id
    gen.blocked_by = None
    if status == "succeeded":
        accounts.capture(session, gen.account_id, gen.credits, gen.id)
    else:
        accounts.release(session, gen.account_id, gen.credits, gen.id, reason=status)
    session.add(gen)
    if held_slot:  # its account and model have a slot free: waiting work may start
        scheduler.wake(session, gen.account_id, "ended")

    node = session.get(Node, gen.node_id)
    if node is not None and node.active_generation_id == gen.id:
        node.active_generation_id = None
        if status == "succeeded":
            node.image_id = image_id
            node.status = "ready"
            node.error_code = node.error_message = None
        elif status == "failed":
            node.status = "failed"
            node.error_code, node.error_message = error_code, error_message
        else:
            node.status = node_status_after_cancel or ("ready" if node.image_id else "empty")
            node.error_code = node.error_message = None
        boards.touch(node)
        session.add(node)
    events.stage(session, gen.board_id, f"generation.{status}", generation_view(gen))
    webhooks.emit_generation(session, gen, base_url)
    if node is not None and publish_node:
        node_updates.stage(session, gen.board_id, base_url, node_updates.Change.state_of(node.id))
    if settle_waiters:
        _settle_waiters(session, gen, base_url)


def _settle_waiters(session: Session, gen: Generation, base_url: str) -> None:
    """A loop, not recursion: a chain may be long."""
    ended = [gen]
    while ended:
        for ending in upstream.after_end(session, ended.pop()):
            # A node whose waiting generation ends this way is not otherwise touched by the
            # caller's change: its node.updated is always staged.
            end_generation(session, ending.gen, ending.status, base_url=base_url, error_code=ending.error_code,
                           error_message=ending.error_message, settle_waiters=False)
            ended.append(ending.gen)


def cancel_active(session: Session, node: Node, *, base_url: str, error_code: str,
                  error_message: str) -> str | None:
    """Cancel (and refund) the node's queued or running generation because something replaces
    it: the node's deletion, or an upload. The caller updates the node itself. Returns the
    generation id, to signal its worker after the commit."""
    if not node.active_generation_id:
        return None
    gen = session.get(Generation, node.active_generation_id)
    if gen is None or gen.status not in ("queued", "running"):
        return None
    end_generation(session, gen, "canceled", base_url=base_url, publish_node=False,
                   error_code=error_code, error_message=error_message)
    return gen.id
