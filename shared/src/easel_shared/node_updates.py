"""Which nodes get a `node.updated` after a change: the one place this rule lives.

Every writer (the api's canvas, upload and generation use cases, `lifecycle` in the api, the
worker and the sweeper) describes what it changed as a `Change` and calls `stage`.

A node's view shows its own row and, besides it (see `views.node_view`):
- an image or video node: its incoming edges and, of each source, its kind, text, image and status;
- an image node: whether a node it feeds is generating.
So a change reaches:
- `rows`: the nodes whose own row changed;
- `shown`: every target of a node whose text, image or status changed (they show it);
- `activity`: every image source of a node that started or stopped generating;
- `edges`: of each edge that came or went, the target (its upstream changed) and the source
  when it is an image node (whether the target generates now counts for it).
Nodes that no longer exist are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from easel_shared import events
from easel_shared.models import Node
from easel_shared.repositories import graph as graph_repo
from easel_shared.repositories import held_or_read
from easel_shared.views import node_views


@dataclass(frozen=True)
class Change:
    rows: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    activity: tuple[str, ...] = ()
    edges: tuple[tuple[str, str], ...] = ()

    @classmethod
    def state_of(cls, node_id: str) -> Change:
        """The node's status (and maybe its image) changed: it started or stopped generating,
        received an image, or failed."""
        return cls(rows=(node_id,), shown=(node_id,), activity=(node_id,))


    def one_node(self) -> str | None:
        """The node, when the change is about that one node and no edge came or went."""
        ids = {*self.rows, *self.shown, *self.activity}
        return next(iter(ids)) if len(ids) == 1 and not self.edges else None


def affected(session: Session, change: Change, around: graph_repo.Around | None = None) -> list[str]:
    """The nodes whose view `change` alters, each once, in a stable order: the changed rows,
    then downstream, then upstream, then the ends of the edges. `around`: the neighbourhood of
    `change.one_node()`, when the caller read it."""
    out: list[str] = list(change.rows)
    if around is not None:
        assert around.node_id == change.one_node()
        out += around.targets if change.shown else []
        out += around.image_sources if change.activity else []
    else:
        out += graph_repo.targets_of(session, change.shown)
        out += graph_repo.image_sources_of(session, change.activity)
    if change.edges:
        kinds = graph_repo.kinds_of(session, {s for s, _ in change.edges})
        for source, target in change.edges:
            out.append(target)
            if kinds.get(source) == "image":
                out.append(source)
    return list(dict.fromkeys(out))


def stage(session: Session, board_id: str, base_url: str, change: Change,
          around: graph_repo.Around | None = None) -> dict[str, dict[str, Any]]:
    """Stage a `node.updated` (the full node) for every node `change` reaches, after flushing
    the session so the views read what the caller changed. Returns the views by node id.
    `around`: the neighbourhood of `change.one_node()` if the caller read it in this transaction
    and changed no edge and no other node since."""
    session.flush()
    # The common change, one node's own state, reads that node's edges once (`graph.around`)
    # rather than four times, and the nodes this transaction holds are not read again.
    one = change.one_node()
    if one is None or (around is not None and around.node_id != one):
        around = None
    elif around is None:
        around = graph_repo.around(session, one)
    ids = affected(session, change, around)
    nodes = held_or_read(session, Node, ids, graph_repo.nodes_by_id)
    views = node_views(session, ids, base_url, nodes=list(nodes.values()), around=around)
    for view in views.values():
        events.stage(session, board_id, "node.updated", view)
    return views
