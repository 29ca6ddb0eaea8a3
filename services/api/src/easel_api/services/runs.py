"""Runs: several image nodes of one board generated in dependency order, asked for at once.

A run accepts one generation per node in ONE transaction under the board lock (all or nothing:
any rule a node breaks refuses the whole run, naming the node, and nothing is reserved), in
dependency order, each with `after_upstream`: a node whose direct upstream node is generating
(earlier in the run, or already before it) waits for it (`easel_shared.upstream`), so each node
starts with the image its upstream node has just made. The run's status is read from its
generations, never stored apart from them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from easel_api.context import AppContext
from easel_api.schemas.requests import RunCreate, RunQuoteRequest
from easel_api.services import generations
from easel_shared import lifecycle, scheduler
from easel_shared.clock import rfc3339, utcnow
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.domain.generation import ACTIVE_GENERATION_STATUSES
from easel_shared.domain.graph import dependency_order
from easel_shared.ids import new_id
from easel_shared.models import Account, Generation, Node, Run
from easel_shared.repositories import accounts as accounts_repo
from easel_shared.repositories import boards as repo
from easel_shared.repositories import graph as graph_repo
from easel_shared.repositories import runs as runs_repo
from easel_shared.views import generation_view

RUN_CANCELED = "run_canceled"


@dataclass(frozen=True)
class Step:
    """One node of a run: the model and parameters it generates with, and their price."""

    node: Node
    model_id: str
    params: dict[str, Any]
    credits: int


def _named(exc: errors.DomainError, node_id: str) -> errors.DomainError:
    """The error of one node of a run says which node."""
    exc.extra.setdefault("node_id", node_id)
    return exc


def _board_or_404(session: Session, account: Account, board_id: str) -> None:
    if repo.get_board(session, account.id, board_id) is None:
        raise errors.NotFound("Board not found.")


def _plan(ctx: AppContext, session: Session, account: Account, board_id: str, body: RunQuoteRequest) -> list[Step]:
    """The run's nodes in dependency order, each with what it will generate with. A node takes
    the run's `model_id` / `params` when given, else its own (what its generation panel shows)."""
    nodes = graph_repo.nodes_by_id(session, body.node_ids)
    for node_id in body.node_ids:
        node = nodes.get(node_id)
        if node is None or node.account_id != account.id or node.board_id != board_id:
            raise errors.NotFound("Node not found on this board.", node_id=node_id)
        if node.kind != "image":
            raise errors.NotAnImageNode(node_id=node_id)
    # The canvas refuses every edge that would close a cycle, so an order always exists.
    order = dependency_order(body.node_ids, graph_repo.edges_among(session, body.node_ids))
    steps = []
    for node_id in order:
        node = nodes[node_id]
        model_id = body.model_id or node.model_id
        if model_id is None:
            raise errors.ModelRequired(node_id=node_id)
        params = dict(body.params if body.params is not None else node.params or {})
        try:
            spec, resolved = generations.spec_and_price(ctx, model_id, params)
        except errors.DomainError as exc:
            raise _named(exc, node_id) from None
        steps.append(Step(node, spec.id, params, resolved.credits))
    return steps


def quote(ctx: AppContext, account: Account, board_id: str, body: RunQuoteRequest) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        _board_or_404(session, account, board_id)
        steps = _plan(ctx, session, account, board_id, body)
        balance = accounts_repo.get(session, account.id)
        assert balance is not None
    credits = sum(s.credits for s in steps)
    return {
        "credits": credits,
        "balance": balance.credits,
        "affordable": balance.credits >= credits,
        "order": [s.node.id for s in steps],
        "nodes": [{"node_id": s.node.id, "model_id": s.model_id, "credits": s.credits} for s in steps],
    }


def _fingerprint(board_id: str, body: RunCreate) -> str:
    raw = json.dumps({"board_id": board_id, **body.model_dump()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def create(ctx: AppContext, account: Account, board_id: str, body: RunCreate, idempotency_key: str | None,
           request_id: str | None) -> tuple[dict[str, Any], bool]:
    """Returns (run, created). Same `Idempotency-Key` and body: the run already made."""
    fingerprint = _fingerprint(board_id, body)
    try:
        view = _create_in_tx(ctx, account, board_id, body, idempotency_key, fingerprint, request_id)
    except IntegrityError:
        # A concurrent twin won the unique (account, key) (or, without a key, a node's one-active
        # generation constraint caught a twin run): answer with the twin's run.
        if not idempotency_key:
            raise errors.AlreadyGenerating() from None
        view = None
    if view is not None:
        return view, True
    with session_scope(ctx.engine) as session:
        existing = runs_repo.by_idempotency_key(session, account.id, idempotency_key or "")
        if existing is None:
            raise errors.AlreadyGenerating()
        if existing.request_fingerprint != fingerprint:
            raise errors.IdempotencyKeyReused()
        return _view(ctx, session, existing), False


def _create_in_tx(ctx: AppContext, account: Account, board_id: str, body: RunCreate, idempotency_key: str | None,
                  fingerprint: str, request_id: str | None) -> dict[str, Any] | None:
    with session_scope(ctx.engine) as session:
        _board_or_404(session, account, board_id)
        if repo.lock_board(session, board_id) is None:
            raise errors.NotFound("Board not found.")
        if idempotency_key and runs_repo.by_idempotency_key(session, account.id, idempotency_key) is not None:
            return None
        steps = _plan(ctx, session, account, board_id, body)
        credits = sum(s.credits for s in steps)
        if body.expected_credits is not None and body.expected_credits != credits:
            raise errors.PriceChanged(f"This run costs {credits} credits, not {body.expected_credits}.",
                                      credits=credits)
        balance = accounts_repo.get(session, account.id)
        if balance is None or balance.credits < credits:
            raise errors.InsufficientCredits(
                f"This run costs {credits} credits; {balance.credits if balance else 0} are available.",
                credits=credits)
        items = []
        for step in steps:
            ask = generations.Ask(step.model_id, step.params, after_upstream=True, request_id=request_id)
            try:
                gen, _ = generations.accept_locked(ctx, session, account, step.node, ask)
            except errors.DomainError as exc:
                raise _named(exc, step.node.id) from None
            items.append({"node_id": step.node.id, "generation_id": gen.id})
        run = Run(id=new_id("run"), board_id=board_id, account_id=account.id, items=items, credits=credits,
                  idempotency_key=idempotency_key, request_fingerprint=fingerprint)
        session.add(run)
        session.flush()
        return _view(ctx, session, run)


def _run_or_404(session: Session, account: Account, board_id: str, run_id: str) -> Run:
    run = runs_repo.get_account_run(session, account.id, board_id, run_id)
    if run is None or repo.get_board(session, account.id, board_id) is None:
        raise errors.NotFound("Run not found.")
    return run


def get(ctx: AppContext, account: Account, board_id: str, run_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        return _view(ctx, session, _run_or_404(session, account, board_id, run_id))


def cancel(ctx: AppContext, account: Account, board_id: str, run_id: str) -> dict[str, Any]:
    """Cancel (and refund) every generation of the run that has not finished; what finished stays."""
    canceled: list[str] = []
    with session_scope(ctx.engine) as session:
        run = _run_or_404(session, account, board_id, run_id)
        repo.lock_board(session, board_id)
        gens = runs_repo.generations_by_id(session, [i["generation_id"] for i in run.items])
        # Downstream first: each one is canceled as the run's, before its upstream's cancel would
        # cancel it as `upstream_canceled`.
        for item in reversed(run.items):
            gen = gens.get(item["generation_id"])
            if gen is None:
                continue
            session.refresh(gen)
            if gen.status in ACTIVE_GENERATION_STATUSES:
                lifecycle.end_generation(session, gen, "canceled", base_url=ctx.base_url, error_code=RUN_CANCELED,
                                         error_message="The run was canceled.")
                canceled.append(gen.id)
        if canceled and run.canceled_at is None:
            run.canceled_at = utcnow()
            session.add(run)
        view = _view(ctx, session, run, gens)
    for gen_id in canceled:
        lifecycle.signal_cancel(ctx.redis, gen_id)
    return view


def status_of(run: Run, statuses: list[str]) -> str:
    """running while a generation is active; then succeeded (all did), canceled (the run was),
    failed (one failed), else canceled (one was canceled on its own)."""
    if any(s in ACTIVE_GENERATION_STATUSES for s in statuses):
        return "running"
    if all(s == "succeeded" for s in statuses):
        return "succeeded"
    if run.canceled_at is None and "failed" in statuses:
        return "failed"
    return "canceled"


def _view(ctx: AppContext, session: Session, run: Run, gens: dict[str, Generation] | None = None) -> dict[str, Any]:
    if gens is None:
        gens = runs_repo.generations_by_id(session, [i["generation_id"] for i in run.items])
    limits = scheduler.Limits.of(ctx.settings, ctx.catalog)
    rows = [gens[i["generation_id"]] for i in run.items]
    items = [{"node_id": g.node_id,
              "generation": generation_view(g, scheduler.queue_info(session, g, limits) if g.status == "queued"
                                            else None)}
             for g in rows]
    return {
        "id": run.id,
        "board_id": run.board_id,
        "status": status_of(run, [g.status for g in rows]),
        "credits": run.credits,
        "items": items,
        "created_at": rfc3339(run.created_at),
        "canceled_at": rfc3339(run.canceled_at),
    }
