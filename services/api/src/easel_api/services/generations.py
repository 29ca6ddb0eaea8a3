"""Models, quotes, and accepting / canceling generations."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from easel_api.context import AppContext
from easel_api.schemas.requests import GenerationCreate
from easel_api.services.common import image_node_or_404, locked_image_node_or_404, node_or_404
from easel_shared import events, lifecycle, node_updates, scheduler, upstream
from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.domain.catalog import ModelSpec, ResolvedParams, availability, resolve_params
from easel_shared.ids import new_id
from easel_shared.models import Account, Generation, Node
from easel_shared.repositories import accounts as accounts_repo
from easel_shared.repositories import boards as repo
from easel_shared.repositories import generations as generations_repo
from easel_shared.repositories import graph as graph_repo
from easel_shared.views import generation_view


def model_view(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "kind": "image",
        "max_reference_images": spec.max_reference_images,
        "resolutions": list(spec.resolutions),
        "aspect_ratios": list(spec.aspect_ratios),
        "credits": dict(spec.credits),
    }


def node_models(ctx: AppContext, account: Account, node_id: str) -> list[dict[str, Any]]:
    with session_scope(ctx.engine) as session:
        node = image_node_or_404(session, account, node_id)
        connected = sum(1 for r in graph_repo.incoming_with_sources(session, [node.id]) if r.kind == "image")
    out = []
    for spec in ctx.catalog.models:
        ok, reason = availability(spec, connected)
        out.append({**model_view(spec), "available": ok, "reason": reason})
    return out


def list_models(ctx: AppContext) -> dict[str, Any]:
    return {"items": [model_view(m) for m in ctx.catalog.models], "next_cursor": None}


def spec_and_price(ctx: AppContext, model_id: str, params: dict[str, Any]) -> tuple[ModelSpec, ResolvedParams]:
    spec = ctx.catalog.get(model_id)
    if spec is None:
        raise errors.UnknownModel()
    try:
        return spec, resolve_params(spec, params)
    except ValueError as exc:
        raise errors.UnsupportedParams(str(exc)) from None


def quote(ctx: AppContext, account: Account, node_id: str, model_id: str, params: dict[str, Any]) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        image_node_or_404(session, account, node_id)
        balance = accounts_repo.get(session, account.id)
        assert balance is not None
    _, resolved = spec_and_price(ctx, model_id, params)
    credits = resolved.credits
    return {"credits": credits, "balance": balance.credits, "affordable": balance.credits >= credits}


def _fingerprint(node_id: str, body: GenerationCreate) -> str:
    # `after_upstream` counts only when set, so a request sent before it existed keeps its print.
    fields = body.model_dump(exclude=None if body.after_upstream else {"after_upstream"})
    raw = json.dumps({"node_id": node_id, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def _limits(ctx: AppContext) -> scheduler.Limits:
    return scheduler.Limits.of(ctx.settings, ctx.catalog)


def _view(ctx: AppContext, session: Session, gen: Generation) -> dict[str, Any]:
    """The generation with where it stands in the scheduler's line, read now."""
    return generation_view(gen, scheduler.queue_info(session, gen, _limits(ctx)))


def _replay(ctx: AppContext, session: Session, existing: Generation, fingerprint: str) -> dict[str, Any]:
    if existing.request_fingerprint != fingerprint:
        raise errors.IdempotencyKeyReused()
    return _view(ctx, session, existing)


def accept(
    ctx: AppContext,
    account: Account,
    node_id: str,
    body: GenerationCreate,
    idempotency_key: str | None,
    request_id: str | None,
) -> tuple[dict[str, Any], bool]:
    """Returns (generation, created). The Celery message goes through the outbox: written with the
    generation, sent right after the commit (by the background relay when Redis is away)."""
    fingerprint = _fingerprint(node_id, body)
    try:
        view = _accept_in_tx(ctx, account, node_id, body, idempotency_key, fingerprint, request_id)
    except IntegrityError:
        # A concurrent twin won the unique (account, key) or one-active-generation constraint.
        with session_scope(ctx.engine) as session:
            existing = (generations_repo.by_idempotency_key(session, account.id, idempotency_key)
                        if idempotency_key else None)
            if existing is not None:
                return _replay(ctx, session, existing, fingerprint), False
        raise errors.AlreadyGenerating() from None
    if view is None:
        with session_scope(ctx.engine) as session:
            existing = generations_repo.by_idempotency_key(session, account.id, idempotency_key or "")
            assert existing is not None
            return _replay(ctx, session, existing, fingerprint), False
    return view, True


def _accept_in_tx(
    ctx: AppContext,
    account: Account,
    node_id: str,
    body: GenerationCreate,
    idempotency_key: str | None,
    fingerprint: str,
    request_id: str | None,
) -> dict[str, Any] | None:
    with session_scope(ctx.engine) as session:
        # The board lock serializes accepts on one board: "one active generation per node" and
        # "never a node and its direct upstream at once" are decided against committed state
        # (and the unique active_node_id constraint backs the first one in the database). The
        # lock finds the board from the node, so the node is read once, under it.
        node = locked_image_node_or_404(session, account, node_id)
        if idempotency_key and generations_repo.by_idempotency_key(session, account.id, idempotency_key) is not None:
            return None
        if body.prompt is not None:
            node.prompt = body.prompt
        ask = Ask(body.model_id, dict(body.params), after_upstream=body.after_upstream,
                  expected_credits=body.expected_credits, idempotency_key=idempotency_key,
                  fingerprint=fingerprint, request_id=request_id)
        return accept_locked(ctx, session, account, node, ask)[1]


@dataclass(frozen=True)
class Ask:
    """One generation asked for: the model and its parameters (they become the node's), and how."""

    model_id: str
    params: dict[str, Any]
    #: Wait for direct upstream nodes that are generating instead of refusing (`upstream`).
    after_upstream: bool = False
    expected_credits: int | None = None
    idempotency_key: str | None = None
    fingerprint: str | None = None
    request_id: str | None = None


def accept_locked(ctx: AppContext, session: Session, account: Account, node: Node,
                  ask: Ask) -> tuple[Generation, dict[str, Any]]:
    """Check the rules and accept one generation on `node`, whose board lock the caller holds:
    reserve its credits, insert it, mark the node generating, hand it to the scheduler (or leave
    it waiting for its upstream) and stage its events. Returns it and its view; raises the
    rule's DomainError otherwise."""
    if node.status == "generating":
        raise errors.AlreadyGenerating()
    # The node's direct neighbourhood is all the rules read: its incoming edges with their
    # sources (in connection order) and its generating targets, one statement (its events
    # below read it again from here: nothing around the node changes meanwhile).
    near = graph_repo.around(session, node.id)
    inputs = upstream.inputs_of(near.incoming, node.prompt)
    if inputs.generating and not ask.after_upstream:
        raise errors.UpstreamInProgress(blocking_node_ids=inputs.generating)
    # A node whose downstream node is active (running, queued, or waiting for it) cannot start:
    # that node's inputs would change under it.
    busy_downstream = near.generating_targets
    if busy_downstream:
        raise errors.DownstreamInProgress(blocking_node_ids=busy_downstream)
    if not inputs.has_prompt:
        raise errors.PromptRequired()
    spec, resolved = spec_and_price(ctx, ask.model_id, ask.params)
    credits = resolved.credits
    # The snapshot holds every parameter the model will see; a missing seed is drawn now so
    # a retry of this generation renders the same picture.
    params = {
        "resolution": resolved.resolution,
        "aspect_ratio": resolved.aspect_ratio,
        "seed": resolved.seed if resolved.seed is not None else secrets.randbelow(2**31),
    }
    fits, why_not = availability(spec, inputs.references)
    if not fits:
        raise errors.TooManyReferences(
            why_not,
            max_reference_images=spec.max_reference_images,
            connected=inputs.references,
        )
    if ask.expected_credits is not None and ask.expected_credits != credits:
        raise errors.PriceChanged(
            f"This generation costs {credits} credits, not {ask.expected_credits}.", credits=credits
        )
    gen = Generation(
        id=new_id("gen"),
        node_id=node.id,
        board_id=node.board_id,
        account_id=account.id,
        active_node_id=node.id,
        status="queued",
        model_id=spec.id,
        params=params,
        # Waiting for its upstream, these are provisional: resolved again when it is released.
        prompt=inputs.prompt,
        reference_image_ids=inputs.reference_image_ids,
        credits=credits,
        idempotency_key=ask.idempotency_key,
        request_fingerprint=ask.fingerprint,
        enqueued_at=utcnow(),
        request_id=ask.request_id,
    )
    if inputs.generating:
        # Accepted now (credits reserved), started when they end (`easel_shared.upstream`).
        gen.blocked_by = scheduler.UPSTREAM
        gen.waits_for = upstream.active_generations(session, inputs.generating)
    if not accounts_repo.reserve(session, account.id, credits, gen.id):
        balance = accounts_repo.get(session, account.id)
        raise errors.InsufficientCredits(
            f"This generation costs {credits} credits; {balance.credits if balance else 0} are available.",
            credits=credits,
        )
    session.add(gen)
    node.status = "generating"
    node.active_generation_id = gen.id
    node.model_id = spec.id
    node.params = dict(ask.params)
    node.error_code = node.error_message = None
    repo.touch(node)
    session.add(node)
    session.flush()
    # Handed to the broker now if its account and model have a free slot; else it waits its
    # turn (`blocked_by`) and the scheduler's fill pass sends it when a slot frees. One waiting
    # for its upstream is left alone until then.
    limits = _limits(ctx)
    scheduler.admit(session, gen, limits)
    view = generation_view(gen, scheduler.queue_info(session, gen, limits))
    events.stage(session, node.board_id, "generation.queued", view)
    node_updates.stage(session, node.board_id, ctx.base_url, node_updates.Change.state_of(node.id), around=near)
    return gen, view


def _generation_or_404(session: Session, account: Account, generation_id: str) -> Generation:
    gen = generations_repo.get_account_generation(session, account.id, generation_id)
    if gen is None:
        raise errors.NotFound("Generation not found.")
    return gen


def get(ctx: AppContext, account: Account, generation_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        gen = _generation_or_404(session, account, generation_id)
        return _view(ctx, session, gen)


def history(ctx: AppContext, account: Account, node_id: str, limit: int,
            cursor: str | None) -> tuple[list[Generation], dict[str, scheduler.QueueInfo]]:
    """A page of the node's generations, and where its waiting one stands (a node has one active
    generation at most)."""
    with session_scope(ctx.engine) as session:
        node_or_404(session, account, node_id)
        rows = generations_repo.node_history(session, node_id, limit, cursor)
        waiting = {g.id: scheduler.queue_info(session, g, _limits(ctx)) for g in rows[:limit] if g.status == "queued"}
        return rows, waiting


def cancel(ctx: AppContext, account: Account, generation_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        gen = _generation_or_404(session, account, generation_id)
        repo.lock_board(session, gen.board_id)
        session.refresh(gen)
        if gen.status not in ("queued", "running"):
            return _view(ctx, session, gen)
        lifecycle.end_generation(session, gen, "canceled", base_url=ctx.base_url, error_code=None, error_message=None)
        view = generation_view(gen)
    lifecycle.signal_cancel(ctx.redis, generation_id)
    return view
