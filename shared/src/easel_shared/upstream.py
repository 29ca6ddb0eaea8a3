"""Generations that wait for their upstream nodes ("run after upstream", and runs of a chain).

A generation accepted with `after_upstream` while nodes directly upstream of its node are
generating is `queued` with `blocked_by = "upstream"` and `waits_for` = those nodes' generations.
Its credits are reserved at accept (the price does not depend on the references); its prompt and
references are provisional. The scheduler leaves it alone (`admit`, `fill` and `queue_info` skip
it), so it holds no slot and no message.

When a generation ends (`lifecycle.end_generation`: success, failure, cancel, node deletion,
upload, sweeper), the generations of its board waiting for it are settled in the same transaction,
under the board lock the ending transaction holds (a waiter's node is on the same board, so no new
lock order):
- it succeeded: the waiter's inputs are resolved again from its node's incoming edges now (the
  upstream node holds its new image). If a direct upstream node is still generating (another one
  it waits for, or one connected while it waited), it waits for that one too. Otherwise its prompt
  rule is checked again (`failed`, `prompt_required`, refunded, when it no longer holds), its
  prompt and `reference_image_ids` are replaced, `blocked_by` is cleared and a `scheduler.wake`
  is written, so a fill pass dispatches it like any waiting work (in its account's order). The
  model's own rules (still offered, parameters, reference limit) are checked by the worker
  before it runs, as for every generation (`domain.generation.run_blocker`).
- it failed or was canceled: the waiter is `canceled` and refunded, with the error
  `upstream_failed` or `upstream_canceled`; what waited for the waiter follows in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlmodel import Session

from easel_shared import events, scheduler
from easel_shared.domain.generation import REASONS, resolved_prompt
from easel_shared.models import Generation, Node
from easel_shared.repositories import generations as generations_repo
from easel_shared.repositories import graph as graph_repo
from easel_shared.views import generation_view

UPSTREAM = scheduler.UPSTREAM
UPSTREAM_FAILED = "upstream_failed"
UPSTREAM_CANCELED = "upstream_canceled"
_MESSAGES = {
    UPSTREAM_FAILED: "A generation upstream of this node failed.",
    UPSTREAM_CANCELED: "A generation upstream of this node was canceled.",
}


@dataclass(frozen=True)
class Inputs:
    """What a node's generation takes from the node and its direct upstream nodes."""

    prompt: str
    reference_image_ids: list[str]
    #: Connected upstream image nodes (a model's reference limit counts them, empty ones too).
    references: int
    #: The prompt rule holds: the node's own prompt, or a connected upstream Text Node.
    has_prompt: bool
    #: Direct upstream nodes that are generating, in connection order.
    generating: list[str]


def inputs_of(upstream: Sequence[Row[Any]], node_prompt: str) -> Inputs:
    """`upstream`: the node's incoming edges with their sources, in connection order
    (`repositories.graph.incoming_with_sources`)."""
    texts = [r.text for r in upstream if r.kind == "text"]
    images = [r for r in upstream if r.kind == "image"]
    return Inputs(
        prompt=resolved_prompt(texts, node_prompt),
        # Upstream images in connection order; never the node's own image.
        reference_image_ids=[r.image_id for r in images if r.image_id],
        references=len(images),
        has_prompt=bool(node_prompt.strip()) or bool(texts),
        generating=list(dict.fromkeys(r.source_node_id for r in upstream if r.status == "generating")),
    )


def active_generations(session: Session, node_ids: Sequence[str]) -> list[str]:
    """The active generations of these (generating) nodes, in the order given."""
    nodes = graph_repo.nodes_by_id(session, node_ids)
    return [g for n in node_ids if (g := nodes[n].active_generation_id if n in nodes else None)]


@dataclass(frozen=True)
class Ending:
    """A waiting generation that must end because of its upstream."""

    gen: Generation
    status: str
    error_code: str
    error_message: str


def after_end(session: Session, ended: Generation) -> list[Ending]:
    """Settle the generations of `ended`'s board that wait for it (see the module). Those that
    are released are handled here; those that must end are returned, for the caller to end
    (`lifecycle.end_generation`, which settles what waited for them in turn)."""
    session.flush()  # the queries below read what the caller just changed (the upstream's node)
    waiting = generations_repo.waiting_for_upstream(session, ended.board_id)
    out: list[Ending] = []
    for gen in waiting:
        if ended.id not in (gen.waits_for or ()):
            continue
        if ended.status == "succeeded":
            ending = _release(session, gen)
            if ending is not None:
                out.append(ending)
        else:
            code = UPSTREAM_FAILED if ended.status == "failed" else UPSTREAM_CANCELED
            out.append(Ending(gen, "canceled", code, _MESSAGES[code]))
    return out


def _release(session: Session, gen: Generation) -> Ending | None:
    node = session.get(Node, gen.node_id)
    if node is None:  # its node's deletion cancels it first; kept for safety
        return Ending(gen, "canceled", "node_deleted", "The node was deleted.")
    inputs = inputs_of(graph_repo.incoming_with_sources(session, [node.id]), node.prompt)
    more = [g for g in active_generations(session, inputs.generating) if g != gen.id]
    if more:
        # Still something upstream in progress: a node it also waits for, or one connected to it
        # meanwhile. Never run beside a direct upstream node that generates: wait for it too.
        gen.waits_for = list(dict.fromkeys([*(gen.waits_for or ()), *more]))
        session.add(gen)
        return None
    if not inputs.has_prompt:  # its prompt was cleared, or its Text Node disconnected, meanwhile
        return Ending(gen, "failed", "prompt_required", REASONS["prompt_required"])
    gen.prompt = inputs.prompt
    gen.reference_image_ids = inputs.reference_image_ids
    gen.blocked_by = None  # the scheduler's now: a fill pass dispatches it in its account's turn
    session.add(gen)
    scheduler.wake(session, gen.account_id, "upstream")
    events.stage(session, gen.board_id, "generation.queued", generation_view(gen))
    return None
