"""The public JSON shape of nodes, edges, boards and generations (API.md), built once here so
the api's responses and every process's live events always agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from easel_shared.clock import rfc3339
from easel_shared.domain.generation import generate_state, toolbar
from easel_shared.domain.graph import Incoming, numbered_references, ordered_upstream
from easel_shared.models import Board, Edge, Generation, Image, Node
from easel_shared.repositories import boards as repo


def image_view(image: Image, base_url: str) -> dict[str, Any]:
    return {
        "id": image.id,
        "url": f"{base_url}/v1/images/{image.id}/content",
        "thumbnail_url": f"{base_url}/v1/images/{image.id}/thumbnail",
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "size_bytes": image.size_bytes,
        "source": image.source,
        "created_at": rfc3339(image.created_at),
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


class BoardGraph:
    """Everything needed to present any node of one board, loaded in three queries."""

    def __init__(self, session: Session, board_id: str, base_url: str) -> None:
        self.base_url = base_url
        self.nodes = {n.id: n for n in repo.board_nodes(session, board_id)}
        self.edges = repo.board_edges(session, board_id)
        self.images = repo.images_by_id(session, [n.image_id for n in self.nodes.values() if n.image_id])

    def incoming(self, node_id: str) -> list[Incoming]:
        out = []
        for e in self.edges:
            src = self.nodes.get(e.source_node_id)
            if e.target_node_id == node_id and src is not None:
                out.append(Incoming(edge_id=e.id, source_node_id=e.source_node_id, source_kind=src.kind, order=e.seq))
        return out

    def downstream_ids(self, node_id: str) -> list[str]:
        return [e.target_node_id for e in self.edges if e.source_node_id == node_id]

    def upstream_texts(self, node_id: str) -> list[tuple[str, str]]:
        return [(i.source_node_id, self.nodes[i.source_node_id].text)
                for i in ordered_upstream(self.incoming(node_id), "text")]

    def references(self, node_id: str) -> list[tuple[int, Incoming, Node]]:
        return [(n, inc, self.nodes[inc.source_node_id]) for n, inc in numbered_references(self.incoming(node_id))]

    def upstream_generating(self, node_id: str) -> bool:
        return any(self.nodes[i.source_node_id].status == "generating" for i in self.incoming(node_id))

    def downstream_generating(self, node_id: str) -> bool:
        return any(
            self.nodes[t].status == "generating" for t in self.downstream_ids(node_id) if t in self.nodes
        )

    def node_view(self, node_id: str) -> dict[str, Any]:
        return node_view(self.nodes[node_id], self)

    def all_views(self) -> list[dict[str, Any]]:
        return [node_view(n, self) for n in self.nodes.values()]


def node_view(node: Node, graph: BoardGraph) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": node.id,
        "board_id": node.board_id,
        "kind": node.kind,
        "position": {"x": node.x, "y": node.y},
        "created_at": rfc3339(node.created_at),
        "updated_at": rfc3339(node.updated_at),
    }
    if node.kind == "text":
        view["text"] = node.text
        return view
    refs = [
        {
            "index": index,
            "node_id": inc.source_node_id,
            "edge_id": inc.edge_id,
            "thumbnail_url": (
                f"{graph.base_url}/v1/images/{src.image_id}/thumbnail" if src.image_id else None
            ),
        }
        for index, inc, src in graph.references(node.id)
    ]
    upstream_text = [{"node_id": nid, "text": text} for nid, text in graph.upstream_texts(node.id)]
    view["references"] = refs
    view["upstream_text"] = upstream_text
    if node.kind == "video":
        return view
    image = graph.images.get(node.image_id) if node.image_id else None
    state = generate_state(
        generating=node.status == "generating",
        upstream_generating=graph.upstream_generating(node.id),
        downstream_generating=graph.downstream_generating(node.id),
        prompt=node.prompt,
        upstream_texts=[t["text"] for t in upstream_text],
    )
    view.update(
        {
            "status": node.status,
            "prompt": node.prompt,
            "model_id": node.model_id,
            "params": node.params or {},
            "image": image_view(image, graph.base_url) if image else None,
            "error": (
                {"code": node.error_code, "message": node.error_message}
                if node.status == "failed" and node.error_code
                else None
            ),
            "generate": {"enabled": state.enabled, "reason_code": state.reason_code, "reason": state.reason},
            "toolbar": list(toolbar(node.status, image is not None)),
            "active_generation_id": node.active_generation_id,
        }
    )
    return view


def _progress_view(gen: Generation) -> dict[str, Any] | None:
    """Where a vendor job stands, while the generation is not finished."""
    if gen.progress is None or gen.status not in ("queued", "running"):
        return None
    return {"queue_position": gen.progress.get("queue_position"), "percentage": gen.progress.get("percentage")}


def generation_view(gen: Generation) -> dict[str, Any]:
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
        "request_id": gen.request_id,
        "created_at": rfc3339(gen.created_at),
        "started_at": rfc3339(gen.started_at),
        "finished_at": rfc3339(gen.finished_at),
    }


def node_views_for(session: Session, board_id: str, node_ids: Sequence[str], base_url: str) -> list[dict[str, Any]]:
    graph = BoardGraph(session, board_id, base_url)
    return [graph.node_view(nid) for nid in node_ids if nid in graph.nodes]
