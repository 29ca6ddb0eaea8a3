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
from easel_shared.repositories import graph as graph_repo
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


def affected(session: Session, change: Change) -> list[str]:
    """The nodes whose view `change` alters, each once, in a stable order: the changed rows,
    then downstream, then upstream, then the ends of the edges."""
    out: list[str] = list(change.rows)
    out += graph_repo.targets_of(session, change.shown)
    out += graph_repo.image_sources_of(session, change.activity)
    if change.edges:
        kinds = graph_repo.kinds_of(session, {s for s, _ in change.edges})
        for source, target in change.edges:
            out.append(target)
            if kinds.get(source) == "image":
                out.append(source)
    return list(dict.fromkeys(out))


def stage(session: Session, board_id: str, base_url: str, change: Change) -> dict[str, dict[str, Any]]:
    """Stage a `node.updated` (the full node) for every node `change` reaches, after flushing
    the session so the views read what the caller changed. Returns the views by node id."""
    session.flush()
    views = node_views(session, affected(session, change), base_url)
    for view in views.values():
        events.stage(session, board_id, "node.updated", view)
    return views
