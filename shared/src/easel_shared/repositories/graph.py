"""Local graph reads: a few nodes, their direct neighbours, and what is reachable from one node.

Every query here is driven by an index on the edges (source or target first) or by primary
keys, so its cost follows the neighbourhood it reads, never the size of the board."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, literal, select
from sqlmodel import Session, col

from easel_shared.models import Edge, Node
from easel_shared.repositories import IDS

# What a target shows of each upstream node (references, upstream text, generate state).
_SOURCE_COLUMNS = (col(Edge.id), col(Edge.target_node_id), col(Edge.source_node_id), col(Edge.seq),
                   col(Node.kind), col(Node.status), col(Node.text), col(Node.image_id))

# The reads every node change makes, built once (see `easel_shared.repositories`): a generation
# runs about ten of them.
_NODES_BY_ID = select(Node).where(col(Node.id).in_(IDS))
_INCOMING_WITH_SOURCES = (select(*_SOURCE_COLUMNS).join(Node, col(Node.id) == col(Edge.source_node_id))
                          .where(col(Edge.target_node_id).in_(IDS)).order_by(col(Edge.seq), col(Edge.id)))
_SOURCES_WITH_GENERATING_TARGET = (select(col(Edge.source_node_id))
                                   .join(Node, col(Node.id) == col(Edge.target_node_id))
                                   .where(col(Edge.source_node_id).in_(IDS), col(Node.status) == "generating"))
_GENERATING_TARGETS = (select(col(Edge.target_node_id)).join(Node, col(Node.id) == col(Edge.target_node_id))
                       .where(col(Edge.source_node_id) == bindparam("source_id"), col(Node.status) == "generating")
                       .order_by(col(Edge.seq)))
_TARGETS_OF = select(col(Edge.target_node_id)).where(col(Edge.source_node_id).in_(IDS)).order_by(col(Edge.seq))
_IMAGE_SOURCES_OF = (select(col(Edge.source_node_id)).join(Node, col(Node.id) == col(Edge.source_node_id))
                     .where(col(Edge.target_node_id).in_(IDS), col(Node.kind) == "image")
                     .order_by(col(Edge.seq)))
_KINDS_OF = select(col(Node.id), col(Node.kind)).where(col(Node.id).in_(IDS))


def nodes_by_id(session: Session, ids: Collection[str]) -> dict[str, Node]:
    if not ids:
        return {}
    return {n.id: n for n in session.execute(_NODES_BY_ID, {"ids": list(ids)}).scalars()}


def incoming_with_sources(session: Session, target_ids: Collection[str]) -> Sequence[Row[Any]]:
    """Edges into `target_ids`, in connection order, each with its source node's kind, status,
    text and image (rows: id, target_node_id, source_node_id, seq, kind, status, text, image_id)."""
    if not target_ids:
        return []
    return session.execute(_INCOMING_WITH_SOURCES, {"ids": list(target_ids)}).all()


def sources_with_generating_target(session: Session, source_ids: Collection[str]) -> set[str]:
    """Those of `source_ids` that feed at least one node that is generating."""
    if not source_ids:
        return set()
    return {r[0] for r in session.execute(_SOURCES_WITH_GENERATING_TARGET, {"ids": list(source_ids)})}


def generating_targets(session: Session, source_id: str) -> list[str]:
    """Nodes directly downstream of `source_id` that are generating, in connection order."""
    rows = session.execute(_GENERATING_TARGETS, {"source_id": source_id}).all()
    return list(dict.fromkeys(r[0] for r in rows))


def targets_of(session: Session, source_ids: Collection[str]) -> list[str]:
    """Nodes directly downstream of `source_ids`, in connection order, each once."""
    if not source_ids:
        return []
    rows = session.execute(_TARGETS_OF, {"ids": list(source_ids)}).all()
    return list(dict.fromkeys(r[0] for r in rows))


def image_sources_of(session: Session, target_ids: Collection[str]) -> list[str]:
    """Image nodes directly upstream of `target_ids`, in connection order, each once."""
    if not target_ids:
        return []
    rows = session.execute(_IMAGE_SOURCES_OF, {"ids": list(target_ids)}).all()
    return list(dict.fromkeys(r[0] for r in rows))


def edges_among(session: Session, node_ids: Collection[str]) -> list[tuple[str, str]]:
    """(source, target) of the edges whose two ends are both among `node_ids`."""
    if not node_ids:
        return []
    ids = list(node_ids)
    rows = session.execute(
        select(col(Edge.source_node_id), col(Edge.target_node_id))
        .where(col(Edge.source_node_id).in_(ids), col(Edge.target_node_id).in_(ids))
    ).all()
    return [(r[0], r[1]) for r in rows]


def kinds_of(session: Session, ids: Collection[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.execute(_KINDS_OF, {"ids": list(ids)}).all()
    return {r[0]: r[1] for r in rows}


def reaches(session: Session, start: str, goal: str) -> bool:
    """True when a path of edges leads from `start` to `goal` (`start` itself excluded).

    A recursive walk in the database (SQLite and PostgreSQL alike) over the edges' source
    index: it visits only what is downstream of `start`, each node once (UNION drops repeats,
    so even a damaged graph with a ring cannot make it loop)."""
    walk = select(col(Edge.target_node_id).label("node_id")).where(
        col(Edge.source_node_id) == start).cte("walk", recursive=True)
    walk = walk.union(
        select(col(Edge.target_node_id)).join(walk, col(Edge.source_node_id) == walk.c.node_id)
    )
    found = session.execute(select(literal(1)).select_from(walk).where(walk.c.node_id == goal).limit(1)).first()
    return found is not None
