"""The dict builders (`easel_shared.views`, the api's model views) and the public models
(`easel_shared.schemas`, `easel_api.schemas.responses`) describe the same JSON: each view
validates against its model with no field missing or extra, and dumping the model gives back
exactly the view, in the same key order. The hot paths serialize the dicts without the models
(`GET /v1/boards/{id}`, node pages, live events); this is what keeps the two from drifting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlmodel import Session

from easel_api.schemas.responses import Account, LedgerEntry, ModelInfo, NodeModel
from easel_api.services.generations import model_view
from easel_shared import schemas
from easel_shared.catalog_loader import load_offered_catalog
from easel_shared.db import get_engine
from easel_shared.migrate import upgrade
from easel_shared.models import Board, Edge, Generation, Image, Node
from easel_shared.repositories import accounts as accounts_repo
from easel_shared.views import (
    board_document,
    board_view,
    edge_view,
    generation_view,
    image_view,
    node_view,
    node_views,
)

BASE = "http://api.test"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def same(adapter: TypeAdapter[Any], view: Any) -> None:
    """`view` is valid and dumps back to itself, byte for byte (key order included)."""
    model = adapter.validate_python(view, strict=False)
    assert json.dumps(adapter.dump_python(model, mode="json")) == json.dumps(view)


def _node(**fields: Any) -> SimpleNamespace:
    row = dict(id="nod_1", board_id="brd_1", kind="image", text="", x=1.5, y=-2.0, prompt="", model_id=None,
               params={}, status="empty", image_id=None, error_code=None, error_message=None,
               active_generation_id=None, created_at=T0, updated_at=T0)
    row.update(fields)
    return SimpleNamespace(**row)


IMAGE = SimpleNamespace(id="img_1", content_type="image/png", width=64, height=48, size_bytes=123,
                        source="upload", created_at=T0)
UPSTREAM = [("edg_1", "nod_t", "text", "empty", "a whale", None),
            ("edg_2", "nod_i", "image", "ready", "", "img_9"),
            ("edg_3", "nod_g", "image", "generating", "", None)]


@pytest.mark.parametrize("view", [
    node_view(_node(kind="text", text="hello"), (), False, None, BASE),
    node_view(_node(kind="video"), UPSTREAM, False, None, BASE),
    node_view(_node(), (), False, None, BASE),
    node_view(_node(), UPSTREAM, True, None, BASE),
    node_view(_node(status="ready", image_id="img_1", params={"resolution": "1K", "aspect_ratio": "1:1", "seed": 3}),
              UPSTREAM[:1], False, IMAGE, BASE),
    node_view(_node(status="generating", active_generation_id="gen_1", model_id="easel-studio",
                    params={"resolution": "2K"}), (), False, None, BASE),
    node_view(_node(status="failed", error_code="content_rejected", error_message="No."), (), False, None, BASE),
], ids=["text", "video", "image-empty", "image-busy-downstream", "image-ready", "image-generating", "image-failed"])
def test_node_views_are_nodes(view: dict[str, Any]) -> None:
    same(TypeAdapter(schemas.Node), view)


def test_image_edge_board_views() -> None:
    same(TypeAdapter(schemas.Image), image_view(IMAGE, BASE))
    edge = Edge(id="edg_1", board_id="brd_1", source_node_id="nod_1", target_node_id="nod_2", seq=1, created_at=T0)
    same(TypeAdapter(schemas.Edge), edge_view(edge))
    board = Board(id="brd_1", account_id="acc_1", name="b", created_at=T0, updated_at=T0)
    same(TypeAdapter(schemas.Board), board_view(board))


@pytest.mark.parametrize("fields", [
    {},
    {"status": "running", "started_at": T0, "attempts": 1, "progress": {"queue_position": 2, "percentage": None}},
    {"status": "succeeded", "started_at": T0, "finished_at": T0, "image_id": "img_1",
     "timings": {"queue_wait_ms": 3, "model_ms": 40, "total_ms": 50}, "request_id": "req_1"},
    {"status": "failed", "finished_at": T0, "error_code": "provider_error", "error_message": "Down."},
    {"status": "canceled", "finished_at": T0, "params": {"resolution": "1K", "aspect_ratio": "16:9"}},
], ids=["queued", "running", "succeeded", "failed", "canceled-no-seed"])
def test_generation_views_are_generations(fields: dict[str, Any]) -> None:
    row: dict[str, Any] = dict(id="gen_1", node_id="nod_1", board_id="brd_1", account_id="acc_1", status="queued",
                               model_id="easel-studio", params={"resolution": "1K", "aspect_ratio": "1:1", "seed": 7},
                               prompt="a whale", reference_image_ids=["img_2"], credits=4, created_at=T0)
    row.update(fields)
    same(TypeAdapter(schemas.Generation), generation_view(Generation(**row)))


def test_model_views_are_models() -> None:
    for spec in load_offered_catalog(None, {}).models:
        view = model_view(spec)
        same(TypeAdapter(ModelInfo), view)
        same(TypeAdapter(NodeModel), {**view, "available": False, "reason": "Too many references."})


def test_board_document_is_a_board_document(tmp_path: Any) -> None:
    """The hot path itself, from a database: every kind of node, edges, an image."""
    url = f"sqlite:///{tmp_path}/shapes.db"
    upgrade(url)
    with Session(get_engine(url)) as session:
        account, _ = accounts_repo.create_account(session, "shapes", 10)
        board = Board(id="brd_1", account_id=account.id, name="b")
        session.add(board)
        session.add(Image(id="img_1", account_id=account.id, storage_key="images/a/img_1.png",
                          thumbnail_key="images/a/img_1.thumb.webp", content_type="image/png", width=4,
                          height=3, size_bytes=10, source="generation"))
        session.add_all([
            Node(id="nod_t", board_id=board.id, account_id=account.id, kind="text", text="a whale"),
            Node(id="nod_i", board_id=board.id, account_id=account.id, kind="image", status="ready",
                 image_id="img_1", params={"resolution": "1K"}),
            Node(id="nod_g", board_id=board.id, account_id=account.id, kind="image", status="generating",
                 active_generation_id="gen_1"),
            Node(id="nod_v", board_id=board.id, account_id=account.id, kind="video"),
            # A time on a whole second: RFC 3339 without a fraction, in both writers.
            Node(id="nod_w", board_id=board.id, account_id=account.id, kind="image",
                 params={"seed": 1}, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ])
        session.flush()
        session.add_all([
            Edge(id="edg_1", board_id=board.id, source_node_id="nod_t", target_node_id="nod_g", seq=1),
            Edge(id="edg_2", board_id=board.id, source_node_id="nod_i", target_node_id="nod_g", seq=2),
            Edge(id="edg_3", board_id=board.id, source_node_id="nod_i", target_node_id="nod_v", seq=3),
        ])
        session.commit()
        document = json.loads(board_document(session, board, BASE))
        assert len(document["nodes"]) == 5 and len(document["edges"]) == 3
        # The board read writes times and params with orjson; the single views format them in
        # Python: the same text.
        ids = [n["id"] for n in document["nodes"]]
        assert document["nodes"] == json.loads(json.dumps(list(node_views(session, ids, BASE).values())))
        assert document["nodes"][-1]["created_at"] == "2026-01-02T03:04:05Z"
        same(TypeAdapter(schemas.BoardDocument), document)
        same(TypeAdapter(schemas.BoardSnapshotEvent), {"id": "1-0", "event": "board.snapshot", "data": document})
        rows = accounts_repo.ledger_page(session, account.id, 10, None)
        assert rows
        for entry in rows:
            assert LedgerEntry.of(entry).kind == entry.kind
        assert Account.of(account).credits == account.credits


def test_models_refuse_undeclared_fields() -> None:
    view = node_view(_node(kind="text", text="x"), (), False, None, BASE)
    with pytest.raises(ValueError, match="Extra inputs"):
        TypeAdapter(schemas.Node).validate_python({**view, "surprise": 1})
