"""The canvas rules as tables: connections, cycles, reference order, the Generate button, the toolbar."""

from __future__ import annotations

import pytest

from easel_shared.domain.generation import REASONS, generate_state, resolved_prompt, toolbar, upload_available
from easel_shared.domain.graph import (
    VIDEO_AS_INPUT_MESSAGE,
    Incoming,
    can_connect,
    dependency_order,
    numbered_references,
    ordered_upstream,
    would_create_cycle,
)

# --------------------------------------------------------------------------- connections


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("text", "text", True),
        ("text", "image", True),
        ("text", "video", True),
        ("image", "text", True),
        ("image", "image", True),
        ("image", "video", True),
        ("video", "text", False),
        ("video", "image", False),
        ("video", "video", False),
    ],
)
def test_connection_matrix(source: str, target: str, allowed: bool) -> None:
    verdict = can_connect(source, target)
    assert verdict.allowed is allowed
    if allowed:
        assert verdict.message is None
    else:
        assert verdict.message


def test_video_to_image_explains_with_the_product_sentence() -> None:
    verdict = can_connect("video", "image")
    assert verdict.message == "No image model currently supports video as input."
    assert VIDEO_AS_INPUT_MESSAGE == verdict.message


@pytest.mark.parametrize("target", ["text", "video"])
def test_video_to_other_kinds_is_refused_with_another_message(target: str) -> None:
    assert can_connect("video", target).message != VIDEO_AS_INPUT_MESSAGE


@pytest.mark.parametrize(("source", "target"), [("audio", "image"), ("image", "audio"), ("", "")])
def test_unknown_kinds_never_connect(source: str, target: str) -> None:
    assert can_connect(source, target).allowed is False


# --------------------------------------------------------------------------- cycles


def ring(n: int) -> list[tuple[str, str]]:
    """Edges n0->n1->...->n(n-1), one short of closing the ring."""
    return [(f"n{i}", f"n{i + 1}") for i in range(n - 1)]


@pytest.mark.parametrize(
    ("edges", "source", "target", "cycle"),
    [
        pytest.param([], "a", "a", True, id="self-loop-empty-graph"),
        pytest.param([("a", "b")], "b", "b", True, id="self-loop-with-edges"),
        pytest.param([], "a", "b", False, id="first-edge"),
        pytest.param([("a", "b")], "b", "a", True, id="two-node-ring"),
        pytest.param([("a", "b"), ("b", "c")], "c", "a", True, id="three-node-ring"),
        pytest.param(ring(12), "n11", "n0", True, id="twelve-node-ring"),
        pytest.param(ring(12), "n0", "n11", False, id="shortcut-along-the-chain"),
        pytest.param(ring(12), "n5", "n0", True, id="back-edge-mid-chain"),
        pytest.param([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], "a", "d", False, id="diamond-shortcut"),
        pytest.param([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], "d", "a", True, id="diamond-closed"),
        pytest.param([("a", "b"), ("c", "d")], "b", "c", False, id="joining-two-chains"),
        pytest.param([("a", "b"), ("c", "d")], "d", "a", False, id="joining-two-chains-other-way"),
        pytest.param([("a", "b"), ("b", "c"), ("c", "d"), ("x", "a")], "d", "x", True, id="ring-through-a-branch"),
        pytest.param([("b", "a"), ("c", "a")], "b", "c", False, id="siblings-feeding-one-node"),
    ],
)
def test_would_create_cycle(edges: list[tuple[str, str]], source: str, target: str, cycle: bool) -> None:
    assert would_create_cycle(edges, source, target) is cycle


def test_cycle_check_accepts_any_iterable_of_pairs() -> None:
    assert would_create_cycle(iter([("a", "b"), ("b", "c")]), "c", "a") is True


# --------------------------------------------------------------------------- reference order


def inc(edge_id: str, source: str, kind: str, order: int) -> Incoming:
    return Incoming(edge_id=edge_id, source_node_id=source, source_kind=kind, order=order)


MIXED = [
    inc("e3", "img-c", "image", 7),
    inc("e1", "img-a", "image", 2),
    inc("t1", "txt-a", "text", 1),
    inc("e2", "img-b", "image", 5),
    inc("t2", "txt-b", "text", 6),
]


def numbering(incoming: list[Incoming]) -> list[tuple[int, str]]:
    return [(index, e.source_node_id) for index, e in numbered_references(incoming)]


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param(MIXED, [(1, "img-a"), (2, "img-b"), (3, "img-c")], id="connection-order-not-list-order"),
        pytest.param([e for e in MIXED if e.edge_id != "e1"], [(1, "img-b"), (2, "img-c")], id="first-removed"),
        pytest.param([e for e in MIXED if e.edge_id != "e2"], [(1, "img-a"), (2, "img-c")], id="middle-removed"),
        pytest.param([e for e in MIXED if e.edge_id != "e3"], [(1, "img-a"), (2, "img-b")], id="last-removed"),
        pytest.param([e for e in MIXED if e.source_kind == "text"], [], id="text-only"),
        pytest.param(
            [inc("e9", "late", "image", 3), inc("e0", "early", "image", 3)], [(1, "early"), (2, "late")],
            id="same-order-tie-broken-by-edge-id",
        ),
    ],
)
def test_numbered_references(incoming: list[Incoming], expected: list[tuple[int, str]]) -> None:
    assert numbering(incoming) == expected


def test_reconnecting_a_removed_reference_puts_it_last() -> None:
    without_a = [e for e in MIXED if e.edge_id != "e1"]
    reconnected = [*without_a, inc("e4", "img-a", "image", 8)]
    assert numbering(reconnected) == [(1, "img-b"), (2, "img-c"), (3, "img-a")]


@pytest.mark.parametrize(
    ("nodes", "edges", "expected"),
    [
        pytest.param(["c", "b", "a"], [("a", "b"), ("b", "c")], ["a", "b", "c"], id="chain-named-backwards"),
        pytest.param(["a", "b"], [], ["a", "b"], id="unconnected-keep-their-order"),
        pytest.param(["d", "b", "c", "a"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")], ["a", "b", "c", "d"],
                     id="diamond"),
        pytest.param(["b", "a"], [("a", "x"), ("x", "b")], ["b", "a"], id="through-a-node-outside-the-set"),
        pytest.param(["x", "a", "b"], [("a", "b"), ("a", "b")], ["x", "a", "b"], id="free-node-first"),
        pytest.param(["a", "a", "b"], [("b", "a")], ["b", "a"], id="duplicates-once"),
    ],
)
def test_dependency_order(nodes: list[str], edges: list[tuple[str, str]], expected: list[str]) -> None:
    assert dependency_order(nodes, edges) == expected


def test_dependency_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        dependency_order(["a", "b"], [("a", "b"), ("b", "a")])


def test_upstream_text_in_connection_order() -> None:
    assert [e.source_node_id for e in ordered_upstream(MIXED, "text")] == ["txt-a", "txt-b"]


# --------------------------------------------------------------------------- Generate button


@pytest.mark.parametrize(
    ("generating", "upstream", "downstream", "prompt", "texts", "reason"),
    [
        (True, True, True, "", [], "already_generating"),
        (True, False, False, "a cat", [], "already_generating"),
        (False, True, True, "", [], "upstream_in_progress"),
        (False, True, False, "a cat", ["text"], "upstream_in_progress"),
        (False, False, True, "", [], "downstream_in_progress"),
        (False, False, True, "a cat", [], "downstream_in_progress"),
        (False, False, False, "", [], "prompt_required"),
        (False, False, False, "   \n\t", [], "prompt_required"),
        # A connected Text Node enables Generate even while its text is empty (product rule).
        (False, False, False, "", ["  ", ""], None),
        (False, False, False, "a cat", [], None),
        (False, False, False, "", ["a whale"], None),
        (False, False, False, " ", ["", "a whale"], None),
    ],
)
def test_generate_state_first_reason_wins(
    generating: bool, upstream: bool, downstream: bool, prompt: str, texts: list[str], reason: str | None
) -> None:
    state = generate_state(generating=generating, upstream_generating=upstream, downstream_generating=downstream,
                           prompt=prompt, upstream_texts=texts)
    assert state.enabled is (reason is None)
    assert state.reason_code == reason
    assert state.reason == (REASONS[reason] if reason else None)


@pytest.mark.parametrize(
    ("code", "sentence"),
    [
        ("already_generating", "An image is already being generated on this node."),
        ("upstream_in_progress", "Upstream task in progress."),
        ("prompt_required", "Write a prompt or connect an upstream Text Node."),
    ],
)
def test_contract_reason_sentences(code: str, sentence: str) -> None:
    assert REASONS[code] == sentence


# --------------------------------------------------------------------------- toolbar


@pytest.mark.parametrize(
    ("status", "has_image", "expected", "can_upload"),
    [
        ("empty", False, ("upload",), True),
        ("generating", False, ("upload",), True),
        ("generating", True, ("upload",), True),
        ("failed", False, ("upload",), True),
        ("failed", True, ("upload",), True),
        ("ready", True, ("crop", "fullscreen", "download"), False),
    ],
)
def test_toolbar_per_status(status: str, has_image: bool, expected: tuple[str, ...], can_upload: bool) -> None:
    assert tuple(toolbar(status, has_image)) == expected
    assert upload_available(status, has_image) is can_upload


# --------------------------------------------------------------------------- prompt sent to the model


@pytest.mark.parametrize(
    ("texts", "prompt", "expected"),
    [
        ([], "a cat", "a cat"),
        (["a whale"], "", "a whale"),
        (["first", "second"], "mine", "first\nsecond\nmine"),
        (["  padded  ", ""], "  own  ", "padded\nown"),
        (["", "   "], "", ""),
        (["b", "a"], "", "b\na"),
    ],
)
def test_resolved_prompt_upstream_text_first_then_own_prompt(texts: list[str], prompt: str, expected: str) -> None:
    assert resolved_prompt(texts, prompt) == expected
