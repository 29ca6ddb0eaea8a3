"""Boards, nodes, edges and images."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Text, bindparam, cast, delete, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.db import is_sqlite
from easel_shared.ids import new_id
from easel_shared.models import Board, Edge, Generation, Image, Node
from easel_shared.repositories import IDS, outbox
from easel_shared.repositories.paging import newest_first


def get_board(session: Session, account_id: str, board_id: str) -> Board | None:
    board = session.get(Board, board_id)
    return board if board is not None and board.account_id == account_id else None


def lock_board(session: Session, board_id: str) -> Board | None:
    """Take the board's row lock for the rest of the transaction. Graph changes and generation
    accepts on one board are serialized through it (SQLite: the whole database is locked by
    BEGIN IMMEDIATE already)."""
    return _locked(session, _LOCK_BOARD, {"board_id": board_id})


def lock_board_of_generation(session: Session, generation_id: str) -> None:
    """`lock_board` of the generation's board, found in the same statement (nothing is locked
    when either is gone): the generation read after it is then read under the lock, and that
    read finds out whether it is there. On SQLite there is no row lock to take (the transaction's
    BEGIN IMMEDIATE took the database's write lock), so nothing is read."""
    if not _holds_every_lock(session):
        _locked(session, _LOCK_BOARD_OF_GENERATION, {"generation_id": generation_id})


def lock_board_of_node(session: Session, account_id: str, node_id: str) -> bool:
    """`lock_board` of the account's node's board, found in the same statement (False when the
    node is gone or not the account's): the node read after it is then read under the lock. On
    SQLite, True without a read (as `lock_board_of_generation`), whoever owns the node: the
    caller's read of the node must check its account itself."""
    if _holds_every_lock(session):
        return True
    return _locked(session, _LOCK_BOARD_OF_NODE, {"node_id": node_id, "account_id": account_id}) is not None


def _holds_every_lock(session: Session) -> bool:
    """SQLite: every transaction holds the database's write lock from its first statement."""
    return is_sqlite(session.get_bind())  # type: ignore[arg-type]


def _locked(session: Session, statements: tuple[Any, Any], params: dict[str, str]) -> Board | None:
    plain, for_update = statements
    engine = session.get_bind()
    board: Board | None = session.execute(plain if is_sqlite(engine) else for_update,  # type: ignore[arg-type]
                                          params).scalars().first()
    return board


def _lock_statements(where: Any) -> tuple[Any, Any]:
    """The board read (plain for SQLite, `FOR UPDATE` otherwise), built once (see
    `easel_shared.repositories`)."""
    q = sa_select(Board).where(where).execution_options(populate_existing=True)
    return q, q.with_for_update(of=Board)


_LOCK_BOARD = _lock_statements(col(Board.id) == bindparam("board_id"))
_LOCK_BOARD_OF_GENERATION = _lock_statements(
    col(Board.id) == sa_select(col(Generation.board_id)).where(col(Generation.id) == bindparam("generation_id"))
    .scalar_subquery())
_LOCK_BOARD_OF_NODE = _lock_statements(
    col(Board.id) == sa_select(col(Node.board_id))
    .where(col(Node.id) == bindparam("node_id"), col(Node.account_id) == bindparam("account_id")).scalar_subquery())


def list_boards(session: Session, account_id: str, limit: int, cursor: str | None) -> list[Board]:
    return newest_first(session, select(Board).where(Board.account_id == account_id), Board.id, limit, cursor)


def board_nodes(session: Session, board_id: str) -> list[Node]:
    return list(session.exec(select(Node).where(Node.board_id == board_id).order_by(col(Node.id))))


class NodeRow(NamedTuple):
    """The columns of a node that its public view reads."""

    id: str
    board_id: str
    kind: str
    text: str
    x: float
    y: float
    prompt: str
    model_id: str | None
    params: Any  # a dict; an `orjson.Fragment` of the stored JSON from `board_node_rows`
    status: str
    image_id: str | None
    error_code: str | None
    error_message: str | None
    active_generation_id: str | None
    created_at: datetime
    updated_at: datetime


class EdgeRow(NamedTuple):
    id: str
    board_id: str
    source_node_id: str
    target_node_id: str
    created_at: datetime


class ImageRow(NamedTuple):
    id: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    source: str
    created_at: datetime


# The whole-board read selects plain columns, run on the session's connection (no ORM result
# layer, no identity map) and handed on as named tuples (a SQLAlchemy row resolves each
# attribute by name in Python; a named tuple's fields cost a C-level index). Each query is
# driven by a (board_id, ...) index.
def _columns(model: Any, row: type[tuple[Any, ...]]) -> list[Any]:
    return [col(getattr(model, name)) for name in row._fields]  # type: ignore[attr-defined]


_NODE_COLUMNS = _columns(Node, NodeRow)


class RawJSON(TypeDecorator[Any]):
    """A JSON column read as its stored text, handed on as an `orjson.Fragment` that orjson
    writes into a document as it is: no parse into Python objects and no serialization again.
    Used with `CAST(... AS TEXT)`, since psycopg would otherwise parse a JSON column itself."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        # The column is NOT NULL and always written by SQLAlchemy's `json.dumps` (one line, no
        # NaN: params are validated against the catalog first); JSON null reads as {} like a
        # parsed row's `params or {}` does.
        return _EMPTY_OBJECT if value is None or value == "null" else orjson.Fragment(value)


_EMPTY_OBJECT = orjson.Fragment(b"{}")
# The board read's node columns: `params` as an `orjson.Fragment` of its JSON text.
_NODE_COLUMNS_RAW_PARAMS = [
    cast(c, RawJSON()).label("params") if c.key == "params" else c for c in _NODE_COLUMNS
]
_EDGE_COLUMNS = _columns(Edge, EdgeRow)
_IMAGE_COLUMNS = _columns(Image, ImageRow)


def board_node_rows(session: Session, board_id: str) -> list[NodeRow]:
    """Every node of the board by id, `params` as an `orjson.Fragment` of the stored JSON (the
    board read writes it into its body as it is; see `RawJSON`)."""
    query = sa_select(*_NODE_COLUMNS_RAW_PARAMS).where(col(Node.board_id) == board_id).order_by(col(Node.id))
    return list(map(NodeRow._make, session.connection().execute(query).all()))


def board_nodes_page(session: Session, board_id: str, limit: int, cursor: str | None) -> list[NodeRow]:
    """Nodes by id after `cursor`, `limit` + 1 of them (the extra one says another page exists)."""
    query = sa_select(*_NODE_COLUMNS).where(col(Node.board_id) == board_id)
    if cursor:
        query = query.where(col(Node.id) > cursor)
    return list(map(NodeRow._make, session.connection().execute(query.order_by(col(Node.id)).limit(limit + 1))))


def board_edge_rows(session: Session, board_id: str) -> list[EdgeRow]:
    query = sa_select(*_EDGE_COLUMNS).where(col(Edge.board_id) == board_id).order_by(col(Edge.seq), col(Edge.id))
    return list(map(EdgeRow._make, session.connection().execute(query).all()))


def board_image_rows(session: Session, board_id: str) -> list[ImageRow]:
    """The images the board's nodes show."""
    query = (sa_select(*_IMAGE_COLUMNS).join(Node, col(Node.image_id) == col(Image.id))
             .where(col(Node.board_id) == board_id))
    return list(map(ImageRow._make, session.connection().execute(query).all()))


def get_node(session: Session, account_id: str, node_id: str) -> Node | None:
    node = session.get(Node, node_id)
    return node if node is not None and node.account_id == account_id else None


def lock_node(session: Session, node_id: str) -> Node | None:
    q = select(Node).where(Node.id == node_id).execution_options(populate_existing=True)
    if not is_sqlite(session.get_bind()):  # type: ignore[arg-type]
        q = q.with_for_update()
    return session.exec(q).first()


def get_edge(session: Session, account_id: str, edge_id: str) -> Edge | None:
    edge = session.get(Edge, edge_id)
    if edge is None:
        return None
    board = session.get(Board, edge.board_id)
    return edge if board is not None and board.account_id == account_id else None


def reload_edge(session: Session, edge_id: str) -> Edge | None:
    """The edge as committed now (None once deleted), not the copy this session already holds."""
    return session.get(Edge, edge_id, populate_existing=True)


def edge_between(session: Session, source_id: str, target_id: str) -> Edge | None:
    return session.exec(
        select(Edge).where(Edge.source_node_id == source_id, Edge.target_node_id == target_id)
    ).first()


def next_edge_seq(session: Session, board: Board) -> int:
    session.execute(update(Board).where(col(Board.id) == board.id).values(edge_seq=col(Board.edge_seq) + 1))
    session.refresh(board)
    return board.edge_seq


def add_graph(session: Session, board: Board, nodes: Sequence[Node], pairs: Sequence[tuple[str, str]],
              images: Sequence[Image] = ()) -> None:
    """Bulk-insert nodes (with their images) and edges `(source, target)` in that connection
    order, in a few statements (imports, fixtures, benchmarks). The caller holds the board's
    lock and has checked the graph rules; edges take the next `len(pairs)` connection seqs."""
    if images:
        session.execute(insert(Image), [i.model_dump() for i in images])
    if nodes:
        session.execute(insert(Node), [n.model_dump() for n in nodes])
    if pairs:
        session.execute(update(Board).where(col(Board.id) == board.id)
                        .values(edge_seq=col(Board.edge_seq) + len(pairs)))
        session.refresh(board)
        first = board.edge_seq - len(pairs) + 1
        session.execute(insert(Edge), [
            Edge(id=new_id("edg"), board_id=board.id, source_node_id=s, target_node_id=t, seq=first + i).model_dump()
            for i, (s, t) in enumerate(pairs)
        ])


def delete_node_edges(session: Session, node_id: str) -> list[Edge]:
    edges = list(
        session.exec(select(Edge).where(or_(col(Edge.source_node_id) == node_id, col(Edge.target_node_id) == node_id))
                     .order_by(col(Edge.seq)))
    )
    for edge in edges:
        session.delete(edge)
    return edges


def delete_board_rows(session: Session, board_id: str) -> None:
    session.execute(delete(Edge).where(col(Edge.board_id) == board_id))
    session.execute(delete(Node).where(col(Node.board_id) == board_id))
    session.execute(delete(Board).where(col(Board.id) == board_id))


def get_image(session: Session, image_id: str) -> Image | None:
    return session.get(Image, image_id)


def get_account_image(session: Session, account_id: str, image_id: str) -> Image | None:
    image = session.get(Image, image_id)
    return image if image is not None and image.account_id == account_id else None


def get_account_image_and_thumbnail_state(session: Session, account_id: str,
                                          image_id: str) -> tuple[Image, bool] | None:
    """The account's image and whether its thumbnail is pending (`outbox.thumbnail_pending`), in
    one statement: the thumbnail route's whole read."""
    row = session.execute(_IMAGE_AND_THUMBNAIL_STATE, {"image_id": image_id, "account_id": account_id}).first()
    return None if row is None else (row[0], bool(row[1]))


# Built once: building the statement cost more than running it (~0.3 ms a call).
_IMAGE_AND_THUMBNAIL_STATE = (select(Image, outbox.thumbnail_pending(col(Image.id)))
                              .where(col(Image.id) == bindparam("image_id"),
                                     col(Image.account_id) == bindparam("account_id")))


def images_by_id(session: Session, ids: Sequence[str]) -> dict[str, Image]:
    if not ids:
        return {}
    return {i.id: i for i in session.execute(_IMAGES_BY_ID, {"ids": list(ids)}).scalars()}


_IMAGES_BY_ID = sa_select(Image).where(col(Image.id).in_(IDS))


def touch(node: Node) -> None:
    node.updated_at = utcnow()
