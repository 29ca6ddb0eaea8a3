"""The scheduler's pure parts: the fair order (start-time fair queuing across accounts), the
queue-position estimate, the catalog's `max_concurrency` and the `ACCOUNT_MAX_RUNNING` default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from easel_shared.catalog_schema import parse_catalog
from easel_shared.domain.scheduling import Flow, ahead_in_flow, charge, first, position
from easel_shared.settings import Settings

T0 = datetime(2027, 1, 1, tzinfo=UTC)


class Fleet:
    """Accounts whose work all waits for one slot, served by the same rules as the fill pass."""

    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = weights
        self.vtime = dict.fromkeys(weights, 0.0)
        self.served = dict.fromkeys(weights, 0)
        self.oldest = {a: T0 + timedelta(seconds=i) for i, a in enumerate(weights)}
        self.system = 0.0
        self.serial = 0

    def serve(self, waiting: dict[str, int], picks: int) -> str:
        order = ""
        for _ in range(picks):
            flows = [Flow(a, self.vtime[a], self.weights[a], self.served[a], self.oldest[a])
                     for a, n in waiting.items() if n > 0]
            if not flows:
                break
            a = first(flows, self.system).account_id
            self.system, self.vtime[a] = charge(self.vtime[a], self.weights[a], self.system)
            self.serial += 1
            self.served[a] = self.serial
            waiting[a] -= 1
            order += a
        return order


def test_equal_weights_take_turns() -> None:
    assert Fleet({"A": 1, "B": 1, "C": 1}).serve({"A": 4, "B": 4, "C": 4}, 12) == "ABCABCABCABC"


def test_a_backlog_does_not_hold_up_a_newcomer() -> None:
    fleet = Fleet({"A": 1, "B": 1})
    assert fleet.serve({"A": 1000, "B": 0}, 50) == "A" * 50
    # B arrives after A was served alone: B is next, then they alternate.
    assert fleet.serve({"A": 950, "B": 5}, 10) == "BABABABABA"


def test_idle_time_banks_no_credit() -> None:
    fleet = Fleet({"A": 1, "B": 1, "C": 1})
    fleet.serve({"A": 5, "B": 5, "C": 0}, 10)  # C idle meanwhile, its virtual time still 0
    assert fleet.serve({"A": 3, "B": 3, "C": 3}, 9) == "CABCABCAB"


@pytest.mark.parametrize(("weights", "share"), [({"A": 2, "B": 1}, 2 / 3), ({"A": 3, "B": 1}, 3 / 4),
                                                ({"A": 1, "B": 1}, 1 / 2), ({"A": 100, "B": 1}, 100 / 101)])
def test_weights_scale_the_share(weights: dict[str, int], share: float) -> None:
    order = Fleet(weights).serve({"A": 10_000, "B": 10_000}, 606)
    assert abs(order.count("A") / len(order) - share) < 0.01


@pytest.mark.parametrize(("tag", "start", "weight", "waiting", "first_on_ties", "ahead"), [
    (2.0, 0.0, 1, 5, True, 3),  # tags 0, 1, 2 (a tie it wins)
    (2.0, 0.0, 1, 5, False, 2),
    (2.0, 0.0, 1, 1, True, 1),  # it has only one
    (0.0, 1.0, 1, 5, True, 0),  # its first is behind
    (1.5, 0.0, 2, 9, False, 3),  # tags 0, 0.5, 1 (and 1.5 ties)
    (1.0, 0.0, 3, 9, False, 3),  # 0, 1/3, 2/3 (1.0 ties, despite rounding)
    (1.0, 0.0, 3, 9, True, 4),
    (5.0, 5.0, 1, 0, True, 0),
])
def test_ahead_in_flow(tag: float, start: float, weight: int, waiting: int, first_on_ties: bool, ahead: int) -> None:
    assert ahead_in_flow(tag, start, weight, waiting, first_on_ties) == ahead


def test_position_matches_the_order_served() -> None:
    flows = {a: Flow(a, 0.0, 1, 0, T0 + timedelta(seconds=i)) for i, a in enumerate("ABC")}
    waiting = {"A": 4, "B": 4, "C": 4}
    order = Fleet({"A": 1, "B": 1, "C": 1}).serve(dict(waiting), 12)
    line = [(flows[a], n) for a, n in waiting.items()]
    for account in "ABC":
        served_at = [i + 1 for i, a in enumerate(order) if a == account]
        assert [position(flows[account], k, line, 0.0) for k in range(4)] == served_at


def test_position_with_a_heavier_account() -> None:
    heavy, light = Flow("H", 0.0, 2, 0, T0), Flow("L", 0.0, 1, 0, T0 + timedelta(seconds=1))
    line = [(heavy, 6), (light, 6)]
    order = Fleet({"H": 2, "L": 1}).serve({"H": 6, "L": 6}, 12)
    served_at = [i + 1 for i, a in enumerate(order) if a == "L"][:3]
    # An estimate: which of two accounts wins a tie changes as they are served; it is off by one
    # place at most here (2, 4, 7 against 2, 5, 8).
    estimates = [position(light, k, line, 0.0) for k in range(3)]
    assert all(abs(e - s) <= 1 for e, s in zip(estimates, served_at, strict=True)), (estimates, served_at)


def _catalog(**extra: Any) -> dict[str, Any]:
    return {"models": [{"id": "flux-pro", "name": "FLUX", "provider": "builtin", "style": "sketch",
                        "max_reference_images": 0, "resolutions": ["1K"], "aspect_ratios": ["1:1"],
                        "credits": {"1K": 1}, **extra}]}


def test_max_concurrency_is_read_from_the_catalog() -> None:
    assert parse_catalog(_catalog(max_concurrency=24)).models[0].max_concurrency == 24
    assert parse_catalog(_catalog()).models[0].max_concurrency is None


@pytest.mark.parametrize("bad", [0, -1, "24", True, 2.5])
def test_max_concurrency_must_be_a_positive_whole_number(bad: object) -> None:
    with pytest.raises(ValueError, match=r"models\[0\] \(flux-pro\): max_concurrency must be a positive whole number"):
        parse_catalog(_catalog(max_concurrency=bad))


def test_an_account_runs_four_at_once_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCOUNT_MAX_RUNNING", raising=False)
    assert Settings().account_max_running == 4
    monkeypatch.setenv("ACCOUNT_MAX_RUNNING", "24")
    assert Settings().account_max_running == 24
    monkeypatch.setenv("ACCOUNT_MAX_RUNNING", "0")
    with pytest.raises(ValueError, match="account_max_running"):
        Settings()


def test_a_fill_pass_sends_500_by_default_and_its_batch_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDULER_FILL_BATCH", raising=False)
    assert Settings().scheduler_fill_batch == 500
    monkeypatch.setenv("SCHEDULER_FILL_BATCH", "10000")
    assert Settings().scheduler_fill_batch == 10_000
    for bad in ("0", "10001", "many"):
        monkeypatch.setenv("SCHEDULER_FILL_BATCH", bad)
        with pytest.raises(ValueError, match="scheduler_fill_batch"):
            Settings()
