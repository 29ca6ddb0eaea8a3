"""Every route of API.md as a `Call`: method, path, body and the model its answer parses into.

Both clients send these; a route is described here once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from easel_client._core import NOT_GIVEN, Call, FileInput, NotGiven, body, location, query, upload_part
from easel_client.models import (
    Account,
    Asset,
    Board,
    BoardDetail,
    CreatedAccount,
    DeletedNode,
    Edge,
    Generation,
    GenerationParams,
    ImageNode,
    LedgerEntry,
    Model,
    Node,
    NodeKind,
    NodeModel,
    Page,
    Position,
    Quote,
    Run,
    RunQuote,
)

M = TypeVar("M", bound=BaseModel)
Params = GenerationParams | Mapping[str, Any]
PositionInput = Position | Mapping[str, float] | tuple[float, float]

_NODE: TypeAdapter[Node] = TypeAdapter(Node)


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: cls.model_validate_json(r.content)


def _node(r: httpx.Response) -> Node:
    return _NODE.validate_json(r.content)


def _image_node(r: httpx.Response) -> ImageNode:
    return ImageNode.model_validate_json(r.content)


def _items(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    page = Page[cls]  # type: ignore[valid-type]
    return lambda r: list(page.model_validate_json(r.content).items)


def _none(_r: httpx.Response) -> None:
    return None


def _params(params: Params | None) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, BaseModel):
        return params.model_dump(exclude_none=True)
    return dict(params)


def _position(position: PositionInput | NotGiven | None) -> Any:
    if position is None or isinstance(position, NotGiven):
        return position
    if isinstance(position, Position):
        return {"x": position.x, "y": position.y}
    if isinstance(position, tuple):
        return {"x": position[0], "y": position[1]}
    return dict(position)


# -- accounts (admin) and credits ---------------------------------------------------------------


def create_account(name: str, credits: int) -> Call[CreatedAccount]:
    return Call("POST", "/v1/admin/accounts", _model(CreatedAccount), auth="admin",
                json={"name": name, "credits": credits})


def change_credits(account_id: str, amount: int, reason: str) -> Call[Account]:
    return Call("POST", f"/v1/admin/accounts/{account_id}/credits", _model(Account), auth="admin",
                json={"amount": amount, "reason": reason})


def get_account() -> Call[Account]:
    return Call("GET", "/v1/account", _model(Account), replay_safe=True)


def ledger(limit: int | None, cursor: str | None) -> Call[Page[LedgerEntry]]:
    return Call("GET", "/v1/account/ledger", _model(Page[LedgerEntry]), params=query(limit=limit, cursor=cursor),
                replay_safe=True)


# -- boards -------------------------------------------------------------------------------------


def create_board(name: str) -> Call[Board]:
    return Call("POST", "/v1/boards", _model(Board), json={"name": name})


def list_boards(limit: int | None, cursor: str | None) -> Call[Page[Board]]:
    return Call("GET", "/v1/boards", _model(Page[Board]), params=query(limit=limit, cursor=cursor), replay_safe=True)


def get_board(board_id: str) -> Call[BoardDetail]:
    return Call("GET", f"/v1/boards/{board_id}", _model(BoardDetail), replay_safe=True)


def delete_board(board_id: str) -> Call[None]:
    # Not replayed after a lost answer: the second try would say 404 about a board it deleted.
    return Call("DELETE", f"/v1/boards/{board_id}", _none)


# -- nodes --------------------------------------------------------------------------------------


def create_node(board_id: str, kind: NodeKind, text: str | None, position: PositionInput | None,
                asset_id: str | None) -> Call[Node]:
    json = query(kind=kind, text=text, position=_position(position), asset_id=asset_id)
    return Call("POST", f"/v1/boards/{board_id}/nodes", _node, json=json)


def place_asset(board_id: str, asset_id: str, position: PositionInput | None) -> Call[ImageNode]:
    json = query(kind="image", asset_id=asset_id, position=_position(position))
    return Call("POST", f"/v1/boards/{board_id}/nodes", _image_node, json=json)


def get_node(node_id: str) -> Call[Node]:
    return Call("GET", f"/v1/nodes/{node_id}", _node, replay_safe=True)


def update_node(node_id: str, *, text: str | NotGiven = NOT_GIVEN, prompt: str | NotGiven = NOT_GIVEN,
                position: PositionInput | NotGiven = NOT_GIVEN, model_id: str | NotGiven | None = NOT_GIVEN,
                params: Params | NotGiven = NOT_GIVEN) -> Call[Node]:
    json = body(text=text, prompt=prompt, position=_position(position), model_id=model_id,
                params=params if isinstance(params, NotGiven) else _params(params))
    # A PATCH sets values, so sending it twice leaves the node as once.
    return Call("PATCH", f"/v1/nodes/{node_id}", _node, json=json, replay_safe=True)


def delete_node(node_id: str) -> Call[DeletedNode]:
    return Call("DELETE", f"/v1/nodes/{node_id}", _model(DeletedNode))


# -- edges --------------------------------------------------------------------------------------


def create_edge(board_id: str, source_node_id: str, target_node_id: str) -> Call[Edge]:
    return Call("POST", f"/v1/boards/{board_id}/edges", _model(Edge),
                json={"source_node_id": source_node_id, "target_node_id": target_node_id})


def delete_edge(edge_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/edges/{edge_id}", _none)


# -- images -------------------------------------------------------------------------------------


def upload_image(node_id: str, file: FileInput, filename: str | None, content_type: str | None) -> Call[ImageNode]:
    return Call("POST", f"/v1/nodes/{node_id}/image", _image_node,
                files={"file": upload_part(file, filename, content_type)})


def crop_image(node_id: str, x: int, y: int, width: int, height: int) -> Call[ImageNode]:
    return Call("POST", f"/v1/nodes/{node_id}/image/crop", _image_node,
                json={"x": x, "y": y, "width": width, "height": height})


def node_image_url(node_id: str, download: bool) -> Call[str]:
    variant = "download" if download else "content"
    return Call("GET", f"/v1/nodes/{node_id}/image/{variant}", location, replay_safe=True, redirect=True)


def image_url(image_id: str, thumbnail: bool) -> Call[str]:
    variant = "thumbnail" if thumbnail else "content"
    return Call("GET", f"/v1/images/{image_id}/{variant}", location, replay_safe=True, redirect=True)


def redirect_of(url: str) -> Call[str]:
    """One of the stable image routes found in answers (`image.url`, `thumbnail_url`, ...)."""
    return Call("GET", "", location, url=url, replay_safe=True, redirect=True)


def fetch(url: str) -> Call[httpx.Response]:
    """A short-lived storage link: fetched without the API key (it is signed itself)."""
    return Call("GET", "", lambda r: r, url=url, auth="none", replay_safe=True)


# -- models, price, generations -----------------------------------------------------------------


def list_models() -> Call[list[Model]]:
    return Call("GET", "/v1/models", _items(Model), replay_safe=True)


def node_models(node_id: str) -> Call[list[NodeModel]]:
    return Call("GET", f"/v1/nodes/{node_id}/models", _items(NodeModel), replay_safe=True)


def quote(node_id: str, model_id: str, params: Params | None) -> Call[Quote]:
    # A price asked twice is the same price: this POST changes nothing.
    return Call("POST", f"/v1/nodes/{node_id}/quote", _model(Quote),
                json={"model_id": model_id, "params": _params(params)}, replay_safe=True)


def create_generation(node_id: str, model_id: str, params: Params | None, prompt: str | None,
                      expected_credits: int | None, idempotency_key: str | None,
                      after_upstream: bool = False) -> Call[Generation]:
    """A fresh key per logical call (unless the caller brings one), the same on every retry:
    the server answers a resent request with the generation it already accepted, charged once."""
    key = idempotency_key or str(uuid.uuid4())
    json = {"model_id": model_id, "params": _params(params),
            **query(prompt=prompt, expected_credits=expected_credits, after_upstream=after_upstream or None)}
    return Call("POST", f"/v1/nodes/{node_id}/generations", _model(Generation), json=json,
                headers={"Idempotency-Key": key}, replay_safe=True)


def get_generation(generation_id: str) -> Call[Generation]:
    return Call("GET", f"/v1/generations/{generation_id}", _model(Generation), replay_safe=True)


def list_generations(node_id: str, limit: int | None, cursor: str | None) -> Call[Page[Generation]]:
    return Call("GET", f"/v1/nodes/{node_id}/generations", _model(Page[Generation]),
                params=query(limit=limit, cursor=cursor), replay_safe=True)


def cancel_generation(generation_id: str) -> Call[Generation]:
    # Canceling twice answers the same canceled (or finished) generation.
    return Call("POST", f"/v1/generations/{generation_id}/cancel", _model(Generation), replay_safe=True)


# -- runs ---------------------------------------------------------------------------------------


def _run_body(node_ids: list[str], model_id: str | None, params: Params | None) -> dict[str, Any]:
    return {"node_ids": list(node_ids),
            **query(model_id=model_id, params=None if params is None else _params(params))}


def quote_run(board_id: str, node_ids: list[str], model_id: str | None, params: Params | None) -> Call[RunQuote]:
    return Call("POST", f"/v1/boards/{board_id}/runs/quote", _model(RunQuote),
                json=_run_body(node_ids, model_id, params), replay_safe=True)


def create_run(board_id: str, node_ids: list[str], model_id: str | None, params: Params | None,
               expected_credits: int | None, idempotency_key: str | None) -> Call[Run]:
    """Idempotent like `create_generation`: one key per logical call, the same on every retry."""
    key = idempotency_key or str(uuid.uuid4())
    json = {**_run_body(node_ids, model_id, params), **query(expected_credits=expected_credits)}
    return Call("POST", f"/v1/boards/{board_id}/runs", _model(Run), json=json,
                headers={"Idempotency-Key": key}, replay_safe=True)


def get_run(board_id: str, run_id: str) -> Call[Run]:
    return Call("GET", f"/v1/boards/{board_id}/runs/{run_id}", _model(Run), replay_safe=True)


def cancel_run(board_id: str, run_id: str) -> Call[Run]:
    # Canceling twice answers the same run.
    return Call("POST", f"/v1/boards/{board_id}/runs/{run_id}/cancel", _model(Run), replay_safe=True)


# -- assets library (assets service) ------------------------------------------------------------


def list_assets(limit: int | None, cursor: str | None) -> Call[Page[Asset]]:
    return Call("GET", "/v1/assets", _model(Page[Asset]), service="assets", params=query(limit=limit, cursor=cursor),
                replay_safe=True)


def get_asset(asset_id: str) -> Call[Asset]:
    return Call("GET", f"/v1/assets/{asset_id}", _model(Asset), service="assets", replay_safe=True)


def asset_url(asset_id: str, variant: str) -> Call[str]:
    return Call("GET", f"/v1/assets/{asset_id}/{variant}", location, service="assets", replay_safe=True,
                redirect=True)


def delete_asset(asset_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/assets/{asset_id}", _none, service="assets")
