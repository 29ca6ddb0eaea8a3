"""Typed live events of a board (`GET /v1/boards/{id}/events`).

Each event keeps the SSE `id` it came with (what a reconnect resumes after) and its `type`.
A type this client does not know yet arrives as `UnknownEvent` with its raw JSON, so a newer
server never breaks an older client's loop.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

from pydantic import TypeAdapter

from easel_client.models import BoardDetail, EaselModel, Edge, Generation, Node

GenerationEventType = Literal[
    "generation.queued",
    "generation.started",
    "generation.progress",
    "generation.succeeded",
    "generation.failed",
    "generation.canceled",
]


class Event(EaselModel):
    id: str
    type: str


class BoardSnapshot(Event):
    """The whole board: first on a fresh connection, and again whenever the server cannot
    replay what was missed (then treat it as a resync: the board is exactly this)."""

    type: Literal["board.snapshot"] = "board.snapshot"
    board: BoardDetail


class NodeChanged(Event):
    type: Literal["node.created", "node.updated"]
    node: Node


class NodeDeleted(Event):
    type: Literal["node.deleted"] = "node.deleted"
    node_id: str
    board_id: str | None = None
    asset_id: str | None = None


class EdgeChanged(Event):
    type: Literal["edge.created", "edge.deleted"]
    edge: Edge


class GenerationChanged(Event):
    type: GenerationEventType
    generation: Generation


class UnknownEvent(Event):
    data: Any = None


BoardEvent = BoardSnapshot | NodeChanged | NodeDeleted | EdgeChanged | GenerationChanged | UnknownEvent

_NODE: TypeAdapter[Node] = TypeAdapter(Node)


def parse_event(event_id: str, event_type: str, data: str) -> BoardEvent:
    """One SSE frame as a typed event."""
    payload: Any = json.loads(data)
    if event_type == "board.snapshot":
        return BoardSnapshot(id=event_id, board=BoardDetail.model_validate(payload))
    if event_type in ("node.created", "node.updated"):
        return NodeChanged(id=event_id, type=event_type, node=_NODE.validate_python(payload))
    if event_type == "node.deleted":
        return NodeDeleted(id=event_id, node_id=payload["id"], board_id=payload.get("board_id"),
                           asset_id=payload.get("asset_id"))
    if event_type in ("edge.created", "edge.deleted"):
        return EdgeChanged(id=event_id, type=event_type, edge=Edge.model_validate(payload))
    if event_type in get_args(GenerationEventType):
        return GenerationChanged.model_validate({"id": event_id, "type": event_type, "generation": payload})
    return UnknownEvent(id=event_id, type=event_type, data=payload)
