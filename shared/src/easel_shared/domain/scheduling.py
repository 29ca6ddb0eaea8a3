"""The fair order among accounts whose work waits for the same slots: start-time fair queuing
(Goyal et al., 1996), one flow per account. Pure functions; `easel_shared.scheduler` applies them.

- Every account has a virtual time (`vtime`), the scheduler one system virtual time `V`: the start
  tag of the generation it dispatched last.
- A generation of account `a` starts at tag `s = max(vtime_a, V)`. Dispatching it moves `V` to `s`
  and `vtime_a` to `s + 1/weight_a`.
- Among the accounts with a generation that may start, the smallest start tag goes first; on a tie
  the account served longest ago, then the one whose waiting work is oldest.

With equal weights this is round robin; an account of weight `w` gets `w` generations per round.
An account that was idle starts again at `V`, so idle time banks no credit, and `V` never goes
back. Each generation of the k-th rank (from 0) of a waiting account gets tag `start + k/weight`,
which is also how `position` estimates a place in the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

#: Floating-point slack when comparing tags (sums of 1/weight are not exact in binary).
EPSILON = 1e-9


@dataclass(frozen=True)
class Flow:
    """An account as the fair order sees it."""

    account_id: str
    vtime: float
    weight: int
    served: int  # the scheduler's serial when it was last served (0: never)
    oldest: datetime  # its oldest waiting generation

    def start(self, system: float) -> float:
        return max(self.vtime, system)

    def key(self, system: float) -> tuple[float, int, datetime, str]:
        """Sorts the flow that goes first first."""
        return (round(self.start(system) / EPSILON) * EPSILON, self.served, self.oldest, self.account_id)


def charge(vtime: float, weight: int, system: float) -> tuple[float, float]:
    """A generation of an account at `vtime` is dispatched: (its start tag, the account's new vtime).
    The start tag becomes the system virtual time when the fair pass picked it."""
    start = max(vtime, system)
    return start, start + 1.0 / weight


def first(flows: list[Flow], system: float) -> Flow:
    """The flow whose turn it is."""
    return min(flows, key=lambda f: f.key(system))


def ahead_in_flow(tag: float, start: float, weight: int, waiting: int, first_on_ties: bool) -> int:
    """How many of a flow's `waiting` generations (tags `start + k/weight`, k = 0, 1, ...) go before
    a generation tagged `tag` of another flow; `first_on_ties`: this flow wins equal tags."""
    if waiting <= 0:
        return 0
    span = (tag - start) * weight  # generations with k < span come first
    nearest = round(span)
    if abs(span - nearest) < EPSILON * max(1, weight):
        count = nearest + 1 if first_on_ties else nearest
    else:
        count = math.ceil(span)
    return max(0, min(waiting, count))


def position(own: Flow, own_ahead: int, others: list[tuple[Flow, int]], system: float) -> int:
    """The place (from 1) of `own`'s generation with `own_ahead` of its account's generations
    before it, among the waiting work of `others` (each flow with its count of waiting
    generations), if nothing else arrived and every slot went to this line."""
    tag = own.start(system) + own_ahead / own.weight
    mine = own.key(system)[1:]
    ahead = own_ahead
    for flow, waiting in others:
        if flow.account_id == own.account_id:
            continue
        ahead += ahead_in_flow(tag, flow.start(system), flow.weight, waiting, flow.key(system)[1:] < mine)
    return ahead + 1
