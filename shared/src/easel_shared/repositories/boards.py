"""Boards, nodes, edges and images."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from easel_shared.clock import utcnow
from easel_shared.db import is_sqlite
from easel_shared.models import Board, Edge, Image, Node
from easel_shared.repositories.paging import newest_first


def get_board(session: Session, account_id: str, board_id: str) -> Board | None:
    board = session.get(Board, board_id)
    return board if board is not None and board.account_id == account_id else None


def lock_board(session: Session, board_id: str) -> Board | None:
    """Take the board's row lock for the rest of the transaction. Graph changes and generation
    accepts on one board are serialized through it (SQLite: the whole database is locked by
    BEGIN IMMEDIATE already)."""
    q = select(Board).where(Board.id == board_id).execution_options(populate_existing=True)
    engine = session.get_bind()
    if not is_sqlite(engine):  # type: ignore[arg-type]
        q = q.with_for_update()
    return session.exec(q).first()


def list_boards(session: Session, account_id: str, limit: int, cursor: str | None) -> list[Board]:
    return newest_first(session, select(Board).where(Board.account_id == account_id), Board.id, limit, cursor)


def board_nodes(session: Session, board_id: str) -> list[Node]:
    return list(session.exec(select(Node).where(Node.board_id == board_id).order_by(col(Node.id))))


def board_edges(session: Session, board_id: str) -> list[Edge]:
    return list(session.exec(select(Edge).where(Edge.board_id == board_id).order_by(col(Edge.seq))))


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


def incoming_edges(session: Session, node_id: str) -> list[Edge]:
    return list(session.exec(select(Edge).where(Edge.target_node_id == node_id).order_by(col(Edge.seq))))


def outgoing_edges(session: Session, node_id: str) -> list[Edge]:
    return list(session.exec(select(Edge).where(Edge.source_node_id == node_id).order_by(col(Edge.seq))))


def delete_node_edges(session: Session, node_id: str) -> list[Edge]:
    edges = list(
        session.exec(select(Edge).where(or_(col(Edge.source_node_id) == node_id, col(Edge.target_node_id) == node_id)))
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


def images_by_id(session: Session, ids: Sequence[str]) -> dict[str, Image]:
    if not ids:
        return {}
    return {i.id: i for i in session.exec(select(Image).where(col(Image.id).in_(list(ids))))}


def touch(node: Node) -> None:
    node.updated_at = utcnow()
