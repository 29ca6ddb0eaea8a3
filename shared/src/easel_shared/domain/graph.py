"""Connection rules of the canvas: which node kinds may connect, cycles, reference order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

NodeKind = Literal["text", "image", "video"]

VIDEO_AS_INPUT_MESSAGE = "No image model currently supports video as input."

# source kind -> target kinds it may feed. A video node connects to nothing.
_ALLOWED: Mapping[str, frozenset[str]] = {
    "text": frozenset({"text", "image", "video"}),
    "image": frozenset({"text", "image", "video"}),
    "video": frozenset(),
}


@dataclass(frozen=True)
class ConnectionVerdict:
    allowed: bool
    message: str | None = None


def can_connect(source_kind: str, target_kind: str) -> ConnectionVerdict:
    if target_kind in _ALLOWED.get(source_kind, frozenset()):
        return ConnectionVerdict(True)
    if source_kind == "video":
        if target_kind == "image":
            return ConnectionVerdict(False, VIDEO_AS_INPUT_MESSAGE)
        return ConnectionVerdict(False, "A Video Node cannot connect to other nodes.")
    return ConnectionVerdict(False, f"A {source_kind} node cannot connect to a {target_kind} node.")


def would_create_cycle(edges: Iterable[tuple[str, str]], source: str, target: str) -> bool:
    """True when adding source -> target closes a cycle (a self-connection included)."""
    if source == target:
        return True
    downstream: dict[str, list[str]] = {}
    for s, t in edges:
        downstream.setdefault(s, []).append(t)
    # A cycle appears iff `source` is reachable from `target`.
    stack, seen = [target], {target}
    while stack:
        current = stack.pop()
        for nxt in downstream.get(current, ()):
            if nxt == source:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


@dataclass(frozen=True)
class Incoming:
    """An edge into a node, with the upstream node's kind and the edge's connection order."""

    edge_id: str
    source_node_id: str
    source_kind: str
    order: int


def ordered_upstream(incoming: Sequence[Incoming], kind: str) -> list[Incoming]:
    """Upstream edges of one kind, in connection order (the order the edges were made)."""
    return sorted((e for e in incoming if e.source_kind == kind), key=lambda e: (e.order, e.edge_id))


def numbered_references(incoming: Sequence[Incoming]) -> list[tuple[int, Incoming]]:
    """Upstream image nodes numbered 1..n in connection order; removing one closes the gap."""
    return list(enumerate(ordered_upstream(incoming, "image"), start=1))


def dependency_order(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """`node_ids` so that every node comes after the nodes of the set directly upstream of it
    (`edges`: (source, target) pairs; pairs with an end outside the set are ignored). Among nodes
    free to go, the one named first goes first. Raises ValueError on a cycle (the canvas never
    holds one)."""
    position = {n: i for i, n in enumerate(dict.fromkeys(node_ids))}
    upstream_left = dict.fromkeys(position, 0)
    downstream: dict[str, list[str]] = {}
    for source, target in set(edges):
        if source in position and target in position and source != target:
            downstream.setdefault(source, []).append(target)
            upstream_left[target] += 1
    ready = [(position[n], n) for n, left in upstream_left.items() if left == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, current = heapq.heappop(ready)
        order.append(current)
        for nxt in downstream.get(current, ()):
            upstream_left[nxt] -= 1
            if upstream_left[nxt] == 0:
                heapq.heappush(ready, (position[nxt], nxt))
    if len(order) != len(position):
        raise ValueError("the nodes' connections form a cycle")
    return order
