"""Lookups several use cases share: a row of the calling account, or the matching 404."""

from __future__ import annotations

from sqlmodel import Session

from easel_shared.domain import errors
from easel_shared.models import Account, Node
from easel_shared.repositories import boards as repo


def node_or_404(session: Session, account: Account, node_id: str) -> Node:
    node = repo.get_node(session, account.id, node_id)
    if node is None:
        raise errors.NotFound("Node not found.")
    return node


def image_node_or_404(session: Session, account: Account, node_id: str) -> Node:
    """The account's node, which must be an Image Node (``not_an_image_node`` otherwise)."""
    node = node_or_404(session, account, node_id)
    if node.kind != "image":
        raise errors.NotAnImageNode()
    return node
