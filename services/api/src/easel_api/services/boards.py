"""Boards, nodes and connections: the canvas use cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from easel_api.context import AppContext
from easel_api.schemas.requests import EdgeCreate, NodeCreate, NodePatch
from easel_api.services import retention
from easel_api.services.common import locked_node_or_404, node_not_found, node_or_404
from easel_shared import events, lifecycle, node_updates
from easel_shared.clock import utcnow
from easel_shared.db import session_scope
from easel_shared.domain import errors
from easel_shared.domain.catalog import validate_params
from easel_shared.domain.graph import can_connect
from easel_shared.domain.node_params import params_problem
from easel_shared.ids import new_id
from easel_shared.models import Account, Board, Edge, Node
from easel_shared.node_updates import Change
from easel_shared.repositories import boards as repo
from easel_shared.repositories import graph as graph_repo
from easel_shared.views import board_document, board_view, edge_view, node_views, one_node_view
from easel_shared.web import page


def _board_or_404(session: Session, account: Account, board_id: str) -> Board:
    board = repo.get_board(session, account.id, board_id)
    if board is None:
        raise errors.NotFound("Board not found.")
    return board


# A row read before its board's lock was taken may have been changed or deleted by the request
# that held the lock; these re-read it under the lock, so the loser of a race gets a 404.


def _lock_board_or_404(session: Session, board_id: str) -> Board:
    board = repo.lock_board(session, board_id)
    if board is None:
        raise errors.NotFound("Board not found.")
    return board


def create_board(ctx: AppContext, account: Account, name: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        board = Board(id=new_id("brd"), account_id=account.id, name=name)
        session.add(board)
        session.flush()
        return board_view(board)


def list_boards(ctx: AppContext, account: Account, limit: int, cursor: str | None) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        rows = repo.list_boards(session, account.id, limit, cursor)
    return page(rows, limit, board_view, lambda b: b.id)


def get_board(ctx: AppContext, account: Account, board_id: str) -> bytes:
    """The whole board as its JSON body (`GET /v1/boards/{id}` and the live `board.snapshot`)."""
    with session_scope(ctx.engine) as session:
        board = _board_or_404(session, account, board_id)
        return board_document(session, board, ctx.base_url)


def check_board(ctx: AppContext, account: Account, board_id: str) -> None:
    """`not_found` unless the account owns the board; reads the board's row only."""
    with session_scope(ctx.engine) as session:
        _board_or_404(session, account, board_id)


def list_nodes(ctx: AppContext, account: Account, board_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of the board's nodes, by id (the board read's order)."""
    with session_scope(ctx.engine) as session:
        board = _board_or_404(session, account, board_id)
        rows = repo.board_nodes_page(session, board.id, limit, cursor)
        items = rows[:limit]
        views = node_views(session, [r.id for r in items], ctx.base_url, nodes=items)
    next_cursor = items[-1].id if len(rows) > limit and items else None
    return {"items": list(views.values()), "next_cursor": next_cursor}


def delete_board(ctx: AppContext, account: Account, board_id: str) -> None:
    canceled: list[str] = []
    with session_scope(ctx.engine) as session:
        board = _board_or_404(session, account, board_id)
        _lock_board_or_404(session, board.id)
        for node in repo.board_nodes(session, board.id):
            canceled += _cancel_for_deletion(ctx, session, node)
            if node.kind == "image" and node.image_id:
                retention.retain(session, node, reason="board_deleted")
        repo.delete_board_rows(session, board.id)
    for gen_id in canceled:
        lifecycle.signal_cancel(ctx.redis, gen_id)


def create_node(ctx: AppContext, account: Account, board_id: str, body: NodeCreate) -> dict[str, Any]:
    if body.kind != "text" and body.text is not None:
        raise errors.InvalidField("Only text nodes have text.")
    if body.kind != "image" and body.asset_id is not None:
        raise errors.InvalidField("Only image nodes can start from an asset.")
    with session_scope(ctx.engine) as session:
        board = _board_or_404(session, account, board_id)
        node = Node(
            id=new_id("nod"),
            board_id=board.id,
            account_id=account.id,
            kind=body.kind,
            text=body.text or "",
            x=body.position.x if body.position else 0.0,
            y=body.position.y if body.position else 0.0,
        )
        if body.asset_id is not None:
            image = retention.place_asset(ctx, session, account, body.asset_id)
            node.image_id = image.id
            node.status = "ready"
        session.add(node)
        session.flush()
        view = one_node_view(session, node, ctx.base_url)
        events.stage(session, board.id, "node.created", view)
        return view


def get_node(ctx: AppContext, account: Account, node_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        node = node_or_404(session, account, node_id)
        return one_node_view(session, node, ctx.base_url)


def patch_node(ctx: AppContext, account: Account, node_id: str, body: NodePatch) -> dict[str, Any]:
    fields = body.model_fields_set
    with session_scope(ctx.engine) as session:
        node = locked_node_or_404(session, account, node_id)
        if "text" in fields:
            if node.kind != "text":
                raise errors.InvalidField("Only text nodes have text.")
            node.text = body.text or ""
        image_only = {"prompt", "model_id", "params"} & fields
        if image_only and node.kind != "image":
            raise errors.InvalidField(f"Only image nodes have {', '.join(sorted(image_only))}.")
        if "prompt" in fields:
            node.prompt = body.prompt or ""
        if "model_id" in fields:
            if body.model_id is not None and ctx.catalog.get(body.model_id) is None:
                raise errors.UnknownModel()
            node.model_id = body.model_id
        if "params" in fields:
            node.params = dict(body.params or {})
        if "params" in fields or "model_id" in fields:
            # A model chosen later re-checks the parameters already stored on the node.
            _check_params(ctx, node.model_id, dict(node.params or {}))
        if "position" in fields and body.position is not None:
            node.x, node.y = body.position.x, body.position.y
        repo.touch(node)
        session.add(node)
        # Downstream nodes show a text node's text inline (and their prompt_required may flip).
        shown = (node.id,) if node.kind == "text" and "text" in fields else ()
        views = node_updates.stage(session, node.board_id, ctx.base_url, Change(rows=(node.id,), shown=shown))
        return views[node.id]


def _check_params(ctx: AppContext, model_id: str | None, params: dict[str, Any]) -> None:
    """Bad parameters are refused when they are set, not only later at Generate: their names
    and values always, and against the node's model when one is chosen."""
    spec = ctx.catalog.get(model_id) if model_id else None
    # A model's own check is stricter (its resolutions and aspect ratios are a subset).
    problem = validate_params(spec, params) if spec is not None else params_problem(params)
    if problem:
        raise errors.UnsupportedParams(problem)


def _cancel_for_deletion(ctx: AppContext, session: Session, node: Node) -> list[str]:
    gen_id = lifecycle.cancel_active(session, node, base_url=ctx.base_url, error_code="node_deleted",
                                     error_message="The node was deleted.")
    return [gen_id] if gen_id else []


def delete_node(ctx: AppContext, account: Account, node_id: str) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        node = locked_node_or_404(session, account, node_id)
        canceled = _cancel_for_deletion(ctx, session, node)
        asset_id = None
        if node.kind == "image" and node.image_id:
            asset_id = retention.retain(session, node, reason="node_deleted")
        removed = repo.delete_node_edges(session, node.id)
        for edge in removed:
            events.stage(session, node.board_id, "edge.deleted", edge_view(edge))
        session.delete(node)
        session.flush()
        events.stage(
            session, node.board_id, "node.deleted", {"id": node.id, "board_id": node.board_id, "asset_id": asset_id}
        )
        node_updates.stage(session, node.board_id, ctx.base_url,
                           Change(edges=tuple((e.source_node_id, e.target_node_id) for e in removed)))
    for gen_id in canceled:
        lifecycle.signal_cancel(ctx.redis, gen_id)
    return {"id": node_id, "asset_id": asset_id}


def create_edge(ctx: AppContext, account: Account, board_id: str, body: EdgeCreate) -> dict[str, Any]:
    try:
        with session_scope(ctx.engine) as session:
            board = _board_or_404(session, account, board_id)
            # Every graph change on a board holds the board's lock, so concurrent requests that
            # would together close a ring are checked one after another against committed edges.
            _lock_board_or_404(session, board.id)
            source = repo.get_node(session, account.id, body.source_node_id)
            target = repo.get_node(session, account.id, body.target_node_id)
            if source is None or target is None:
                raise node_not_found()
            if source.board_id != board.id or target.board_id != board.id:
                raise errors.CrossBoardConnection()
            if source.id == target.id:
                raise errors.CycleNotAllowed("A node cannot connect to itself.")
            verdict = can_connect(source.kind, target.kind)
            if not verdict.allowed:
                raise errors.ConnectionNotAllowed(verdict.message)
            if repo.edge_between(session, source.id, target.id) is not None:
                raise errors.DuplicateConnection()
            # A ring would close iff the source is already downstream of the target: the walk
            # visits only what the target feeds, never the rest of the board.
            if graph_repo.reaches(session, target.id, source.id):
                raise errors.CycleNotAllowed()
            edge = Edge(
                id=new_id("edg"),
                board_id=board.id,
                source_node_id=source.id,
                target_node_id=target.id,
                seq=repo.next_edge_seq(session, board),
            )
            session.add(edge)
            board.updated_at = utcnow()
            session.add(board)
            session.flush()
            events.stage(session, board.id, "edge.created", edge_view(edge))
            node_updates.stage(session, board.id, ctx.base_url, Change(edges=((source.id, target.id),)))
            return edge_view(edge)
    except IntegrityError:
        # The unique (source, target) pair caught a concurrent twin of this request.
        raise errors.DuplicateConnection() from None


def delete_edge(ctx: AppContext, account: Account, edge_id: str) -> None:
    with session_scope(ctx.engine) as session:
        edge = repo.get_edge(session, account.id, edge_id)
        if edge is None:
            raise errors.NotFound("Edge not found.")
        _lock_board_or_404(session, edge.board_id)
        edge = repo.reload_edge(session, edge.id)
        if edge is None:
            raise errors.NotFound("Edge not found.")
        session.delete(edge)
        session.flush()
        events.stage(session, edge.board_id, "edge.deleted", edge_view(edge))
        node_updates.stage(session, edge.board_id, ctx.base_url,
                           Change(edges=((edge.source_node_id, edge.target_node_id),)))
