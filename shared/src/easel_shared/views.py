"""The public JSON shape of nodes, edges, boards and generations (API.md), built once here so
the api's responses and every process's live events always agree.

A node's view shows its own row plus, for image and video nodes, what it shows of its direct
upstream nodes (references, upstream text, whether one generates) and, for image nodes, whether
a node it feeds is generating. Two readers feed the same `node_view`:

- `node_views`: a few nodes (one request's node and its neighbours), a constant number of
  indexed queries whatever the board's size;
- `board_document`: a whole board in four queries of plain columns, dicts built directly and
  serialized once by orjson, straight to the response's bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlmodel import Session

from easel_shared.clock import rfc3339
from easel_shared.domain.generation import generate_state, toolbar
from easel_shared.gc_pause import gc_paused
from easel_shared.models import Board, Edge, Generation, Image
from easel_shared.repositories import boards as repo
from easel_shared.repositories import graph as graph_repo
from easel_shared.repositories import held_or_read

# One upstream edge as its target shows it: (edge id, source id, source kind, source status,
# source text, source image id). Lists of these are always in connection order (edge seq, then
# edge id: the order of `easel_shared.domain.graph.ordered_upstream`), which the queries give.
Upstream = tuple[str, str, str, str, str, "str | None"]


class NodeFields(Protocol):
    """What a node view reads of a node: a `Node`, or a row of the same columns."""

    @property
    def id(self) -> str: ...
    @property
    def board_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def x(self) -> float: ...
    @property
    def y(self) -> float: ...
    @property
    def prompt(self) -> str: ...
    @property
    def model_id(self) -> str | None: ...
    @property
    def params(self) -> Any: ...  # a dict, or an `orjson.Fragment` of its JSON
    @property
    def status(self) -> str: ...
    @property
    def image_id(self) -> str | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def active_generation_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class ImageFields(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


# How a view writes a time: RFC 3339 text; the board read keeps the datetime for orjson to write.
Stamp = Callable[[datetime], Any]


def image_view(image: ImageFields, base_url: str, stamp: Stamp = rfc3339) -> dict[str, Any]:
    return {
        "id": image.id,
        "url": f"{base_url}/v1/images/{image.id}/content",
        "thumbnail_url": f"{base_url}/v1/images/{image.id}/thumbnail",
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "size_bytes": image.size_bytes,
        "source": image.source,
        "created_at": stamp(image.created_at),
    }


def edge_view(edge: Edge) -> dict[str, Any]:
    return {
        "id": edge.id,
        "board_id": edge.board_id,
        "source_node_id": edge.source_node_id,
        "target_node_id": edge.target_node_id,
        "created_at": rfc3339(edge.created_at),
    }


def board_view(board: Board) -> dict[str, Any]:
    return {
        "id": board.id,
        "name": board.name,
        "created_at": rfc3339(board.created_at),
        "updated_at": rfc3339(board.updated_at),
    }


def node_view(node: NodeFields, upstream: Sequence[Upstream], downstream_generating: bool,
              image: ImageFields | None, base_url: str, stamp: Stamp = rfc3339) -> dict[str, Any]:
    """The public node. `upstream`: its incoming edges in connection order; `image`: the row
    `node.image_id` names. Runs once per node of a board read, so it builds each dict once."""
    head: dict[str, Any] = {
        "id": node.id,
        "board_id": node.board_id,
        "kind": node.kind,
        "position": {"x": node.x, "y": node.y},
        "created_at": stamp(node.created_at),
        "updated_at": stamp(node.updated_at),
    }
    if node.kind == "text":
        head["text"] = node.text
        return head
    refs: list[dict[str, Any]] = []
    upstream_text: list[dict[str, Any]] = []
    upstream_generating = False
    for edge_id, source_id, kind, status, text, image_id in upstream:
        if kind == "image":
            # Numbered 1..n in connection order; removing one closes the gap.
            refs.append({
                "index": len(refs) + 1,
                "node_id": source_id,
                "edge_id": edge_id,
                "thumbnail_url": f"{base_url}/v1/images/{image_id}/thumbnail" if image_id else None,
            })
        elif kind == "text":
            upstream_text.append({"node_id": source_id, "text": text})
        if status == "generating":
            upstream_generating = True
    head["references"] = refs
    head["upstream_text"] = upstream_text
    if node.kind == "video":
        return head
    status = node.status
    state = generate_state(
        generating=status == "generating",
        upstream_generating=upstream_generating,
        downstream_generating=downstream_generating,
        prompt=node.prompt,
        upstream_texts=[t["text"] for t in upstream_text],
    )
    head["status"] = status
    head["prompt"] = node.prompt
    head["model_id"] = node.model_id
    head["params"] = node.params or {}
    head["image"] = image_view(image, base_url, stamp) if image is not None else None
    head["error"] = (
        {"code": node.error_code, "message": node.error_message} if status == "failed" and node.error_code else None
    )
    head["generate"] = {"enabled": state.enabled, "reason_code": state.reason_code, "reason": state.reason}
    head["toolbar"] = list(toolbar(status, image is not None))
    head["active_generation_id"] = node.active_generation_id
    return head


def node_views(session: Session, node_ids: Iterable[str], base_url: str,
               nodes: Sequence[NodeFields] | None = None,
               around: graph_repo.Around | None = None) -> dict[str, dict[str, Any]]:
    """Views of the named nodes that exist (`nodes`: their rows, when the caller has them), in
    the order asked. At most four queries, each driven by an index: the nodes, the edges into
    the image and video nodes with their sources, which image nodes feed a generating node, and
    the images shown (those the session does not hold already). `around`, when the caller read
    it, stands for the edge reads of its node."""
    ids = list(dict.fromkeys(node_ids))
    rows: dict[str, NodeFields] = (
        {n.id: n for n in nodes} if nodes is not None else dict(graph_repo.nodes_by_id(session, ids))
    )
    present = [rows[i] for i in ids if i in rows]
    known = around.node_id if around is not None and around.node_id in rows else None
    incoming = list(graph_repo.incoming_with_sources(
        session, [n.id for n in present if n.kind != "text" and n.id != known]))
    busy = graph_repo.sources_with_generating_target(
        session, [n.id for n in present if n.kind == "image" and n.id != known])
    if around is not None and known is not None:
        if rows[known].kind != "text":
            incoming += around.incoming
        if rows[known].kind == "image" and around.feeds_generating:
            busy.add(known)
    upstream: dict[str, list[Upstream]] = {}
    for r in incoming:
        upstream.setdefault(r.target_node_id, []).append(
            (r.id, r.source_node_id, r.kind, r.status, r.text, r.image_id))
    shown = [n.image_id for n in present if n.kind == "image" and n.image_id]
    images = held_or_read(session, Image, shown, repo.images_by_id)
    return {
        n.id: node_view(n, upstream.get(n.id, ()), n.id in busy, images.get(n.image_id) if n.image_id else None,
                        base_url)
        for n in present
    }


def one_node_view(session: Session, node: NodeFields, base_url: str) -> dict[str, Any]:
    return node_views(session, [node.id], base_url, nodes=[node])[node.id]


# The board read's times are datetimes that orjson writes as `rfc3339` does: UTC with "Z", naive
# ones (SQLite's) taken as UTC, microseconds only when not zero. PostgreSQL sessions are in UTC
# (`easel_shared.db`), so no other offset reaches it.
_BOARD_JSON = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _as_is(value: datetime) -> datetime:
    return value


def board_document(session: Session, board: Board, base_url: str) -> bytes:
    """`GET /v1/boards/{id}` and the live `board.snapshot`, as the JSON body: the board, every node
    (by id) and every edge (in connection order). Four queries of plain columns; no per-node
    query and no per-node object besides the view itself. The views keep the rows' datetimes and
    the nodes' `params` as the stored JSON text, and orjson writes both into the body (formatting
    15,000 times and parsing 5,000 `params` in Python was a third of a 5,000-node read). The
    cyclic garbage collector waits meanwhile: the build allocates tens of thousands of (acyclic)
    dicts, each of which would otherwise count towards collections that walk the whole growing
    document again and again."""
    with gc_paused():
        return orjson.dumps(_board_document(session, board, base_url), option=_BOARD_JSON)


def _board_document(session: Session, board: Board, base_url: str) -> dict[str, Any]:
    nodes = repo.board_node_rows(session, board.id)
    edges = repo.board_edge_rows(session, board.id)
    images = {i.id: i for i in repo.board_image_rows(session, board.id)}
    by_id = {n.id: n for n in nodes}
    upstream: dict[str, list[Upstream]] = {}
    busy: set[str] = set()
    edge_views: list[dict[str, Any]] = []
    for e in edges:
        source, target = by_id.get(e.source_node_id), by_id.get(e.target_node_id)
        if source is not None:
            upstream.setdefault(e.target_node_id, []).append(
                (e.id, e.source_node_id, source.kind, source.status, source.text, source.image_id))
        if target is not None and target.status == "generating":
            busy.add(e.source_node_id)
        edge_views.append({
            "id": e.id,
            "board_id": e.board_id,
            "source_node_id": e.source_node_id,
            "target_node_id": e.target_node_id,
            "created_at": e.created_at,
        })
    no_upstream: tuple[Upstream, ...] = ()
    node_list = [
        node_view(n, upstream.get(n.id, no_upstream), n.id in busy,
                  images.get(n.image_id) if n.image_id else None, base_url, _as_is)
        for n in nodes
    ]
    return {**board_view(board), "nodes": node_list, "edges": edge_views}


def _progress_view(gen: Generation) -> dict[str, Any] | None:
    """Where a vendor job stands, while the generation is not finished."""
    if gen.progress is None or gen.status not in ("queued", "running"):
        return None
    return {"queue_position": gen.progress.get("queue_position"), "percentage": gen.progress.get("percentage")}


def generation_view(gen: Generation, queue: tuple[int | None, str | None] | None = None) -> dict[str, Any]:
    """The public generation. `queue`: (queue_position, blocked_by) as the scheduler reads them now
    (`easel_shared.scheduler.queue_info`); without it, what the row says (no position)."""
    position, blocked_by = queue if queue is not None else (None, gen.blocked_by)
    waiting = gen.status == "queued"
    return {
        "id": gen.id,
        "node_id": gen.node_id,
        "board_id": gen.board_id,
        "status": gen.status,
        "model_id": gen.model_id,
        "params": gen.params,
        "prompt": gen.prompt,
        "reference_image_ids": list(gen.reference_image_ids),
        "credits": gen.credits,
        "error": {"code": gen.error_code, "message": gen.error_message} if gen.error_code else None,
        "image_id": gen.image_id,
        "attempts": gen.attempts,
        "timings": dict(gen.timings or {}),
        "progress": _progress_view(gen),
        "queue_position": position if waiting else None,
        "blocked_by": blocked_by if waiting else None,
        "waits_for": list(gen.waits_for or ()),
        "request_id": gen.request_id,
        "created_at": rfc3339(gen.created_at),
        "started_at": rfc3339(gen.started_at),
        "finished_at": rfc3339(gen.finished_at),
    }
