"""Lookups several use cases share: a row of the calling account, or the matching 404."""

from __future__ import annotations

from sqlmodel import Session

from easel_shared.domain import errors
from easel_shared.models import Account, Node
from easel_shared.repositories import boards as repo


def node_not_found() -> errors.NotFound:
    return errors.NotFound("Node not found.")


def node_or_404(session: Session, account: Account, node_id: str) -> Node:
    node = repo.get_node(session, account.id, node_id)
    if node is None:
        raise node_not_found()
    return node


def locked_node_or_404(session: Session, account: Account, node_id: str) -> Node:
    """The account's node, read once, under its board's lock (one statement finds the board from
    the node and locks it; on PostgreSQL the node's row is locked too), or 404. The account is
    checked on the node's own read: on SQLite the board lock reads nothing
    (`repositories.boards.lock_board_of_node`)."""
    if not repo.lock_board_of_node(session, account.id, node_id):
        raise node_not_found()
    node = repo.lock_node(session, node_id)
    if node is None or node.account_id != account.id:
        raise node_not_found()
    return node


def image_node_or_404(session: Session, account: Account, node_id: str) -> Node:
    """The account's node, which must be an Image Node (``not_an_image_node`` otherwise)."""
    return _image(node_or_404(session, account, node_id))


def locked_image_node_or_404(session: Session, account: Account, node_id: str) -> Node:
    """`locked_node_or_404`, which must be an Image Node (``not_an_image_node`` otherwise)."""
    return _image(locked_node_or_404(session, account, node_id))


def _image(node: Node) -> Node:
    if node.kind != "image":
        raise errors.NotAnImageNode()
    return node
