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


def lock_board_of_node_or_404(session: Session, account: Account, node_id: str) -> None:
    """Take the lock of the board of the account's node (one statement finds and locks it), or
    404: the node read after this is read under the lock, once. On SQLite it reads nothing and
    never answers 404 (`repositories.boards.lock_board_of_node`): that read must check the
    node's account (`node_or_404` does)."""
    if not repo.lock_board_of_node(session, account.id, node_id):
        raise node_not_found()


def image_node_or_404(session: Session, account: Account, node_id: str) -> Node:
    """The account's node, which must be an Image Node (``not_an_image_node`` otherwise)."""
    node = node_or_404(session, account, node_id)
    if node.kind != "image":
        raise errors.NotAnImageNode()
    return node
