"""Local graph reads: a few nodes, their direct neighbours, and what is reachable from one node.

Every query here is driven by an index on the edges (source or target first) or by primary
keys, so its cost follows the neighbourhood it reads, never the size of the board."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Row, bindparam, literal, literal_column, select, union_all
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from easel_shared.models import Edge, Node
from easel_shared.repositories import IDS

# What a target shows of each upstream node (references, upstream text, generate state).
_SOURCE_COLUMNS = (col(Edge.id), col(Edge.target_node_id), col(Edge.source_node_id), col(Edge.seq),
                   col(Node.kind), col(Node.status), col(Node.text), col(Node.image_id))
_SOURCE_NAMES = ("id", "target_node_id", "source_node_id", "seq", "kind", "status", "text", "image_id")

# The reads every node change makes, built once (see `easel_shared.repositories`): a generation
# runs about ten of them.
_NODES_BY_ID = select(Node).where(col(Node.id).in_(IDS))
_INCOMING_WITH_SOURCES = (select(*_SOURCE_COLUMNS).join(Node, col(Node.id) == col(Edge.source_node_id))
                          .where(col(Edge.target_node_id).in_(IDS)).order_by(col(Edge.seq), col(Edge.id)))
_SOURCES_WITH_GENERATING_TARGET = (select(col(Edge.source_node_id))
                                   .join(Node, col(Node.id) == col(Edge.target_node_id))
                                   .where(col(Edge.source_node_id).in_(IDS), col(Node.status) == "generating"))
_TARGETS_OF = select(col(Edge.target_node_id)).where(col(Edge.source_node_id).in_(IDS)).order_by(col(Edge.seq))
_IMAGE_SOURCES_OF = (select(col(Edge.source_node_id)).join(Node, col(Node.id) == col(Edge.source_node_id))
                     .where(col(Edge.target_node_id).in_(IDS), col(Node.kind) == "image")
                     .order_by(col(Edge.seq)))
_KINDS_OF = select(col(Node.id), col(Node.kind)).where(col(Node.id).in_(IDS))


def _edges_at(outgoing: bool) -> Any:
    target = aliased(Node)
    end = col(Edge.source_node_id) if outgoing else col(Edge.target_node_id)
    # Labelled, so the compound's ORDER BY names its columns (SQLite requires it).
    labelled: list[Any] = [c.label(name) for c, name in zip(_SOURCE_COLUMNS, _SOURCE_NAMES, strict=True)]
    return (select(*labelled, col(target.status).label("target_status"),
                   literal_column("1" if outgoing else "0").label("outgoing"))
            .join(Node, col(Node.id) == col(Edge.source_node_id))
            .join(target, col(target.id) == col(Edge.target_node_id))
            .where(end == bindparam("node_id")))


# Every edge at one node, each half driven by its index, in connection order.
_AROUND = union_all(_edges_at(False), _edges_at(True)).order_by(literal_column("seq"), literal_column("id"))


class Around(NamedTuple):
    """One node's direct neighbourhood, read in one statement (`around`): what several reads
    give for that node alone."""

    node_id: str
    #: `incoming_with_sources([node_id])`: the incoming edges with their sources, in connection order
    incoming: list[Row[Any]]
    #: `targets_of([node_id])`
    targets: list[str]
    #: `image_sources_of([node_id])`
    image_sources: list[str]
    #: the nodes it feeds that are generating, in connection order
    generating_targets: list[str]

    @property
    def feeds_generating(self) -> bool:
        """`node_id in sources_with_generating_target([node_id])`"""
        return bool(self.generating_targets)


def around(session: Session, node_id: str) -> Around:
    rows = session.execute(_AROUND, {"node_id": node_id}).all()
    incoming = [r for r in rows if not r.outgoing]
    outgoing = [r for r in rows if r.outgoing]
    return Around(node_id, incoming, list(dict.fromkeys(r.target_node_id for r in outgoing)),
                  list(dict.fromkeys(r.source_node_id for r in incoming if r.kind == "image")),
                  list(dict.fromkeys(r.target_node_id for r in outgoing if r.target_status == "generating")))


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
