from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from easel_api.deps import AccountDep, CtxDep
from easel_api.responses import FastJSONResponse
from easel_api.schemas.requests import BoardCreate, EdgeCreate, NodeCreate, NodePatch
from easel_api.services import boards
from easel_shared.schemas import (
    Board,
    BoardDocument,
    BoardPage,
    DeletedNode,
    Edge,
    Node,
    NodePage,
    error_responses,
    link,
)
from easel_shared.web import PageDep

router = APIRouter(prefix="/v1")

_BOARD = "$response.body#/id"
_BOARD_LINKS = {
    "GetBoard": link("get", "/v1/boards/{board_id}", board_id=_BOARD),
    "ListNodes": link("get", "/v1/boards/{board_id}/nodes", board_id=_BOARD),
    "CreateNode": link("post", "/v1/boards/{board_id}/nodes", board_id=_BOARD),
    "CreateEdge": link("post", "/v1/boards/{board_id}/edges", board_id=_BOARD),
    "DeleteBoard": link("delete", "/v1/boards/{board_id}", board_id=_BOARD),
}
_NODE = "$response.body#/id"
_NODE_LINKS = {
    "GetNode": link("get", "/v1/nodes/{node_id}", node_id=_NODE),
    "PatchNode": link("patch", "/v1/nodes/{node_id}", node_id=_NODE),
    "NodeModels": link("get", "/v1/nodes/{node_id}/models", node_id=_NODE),
    "Quote": link("post", "/v1/nodes/{node_id}/quote", node_id=_NODE),
    "CreateGeneration": link("post", "/v1/nodes/{node_id}/generations", node_id=_NODE),
    "NodeGenerations": link("get", "/v1/nodes/{node_id}/generations", node_id=_NODE),
    "UploadImage": link("post", "/v1/nodes/{node_id}/image", node_id=_NODE),
    "CropImage": link("post", "/v1/nodes/{node_id}/image/crop", node_id=_NODE),
    "DeleteNode": link("delete", "/v1/nodes/{node_id}", node_id=_NODE),
}


@router.post("/boards", status_code=status.HTTP_201_CREATED, response_model=Board,
             responses={201: {"links": _BOARD_LINKS}, **error_responses(401, 413, 422)})
def create_board(body: BoardCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_board(ctx, account, body.name)


@router.get("/boards", response_model=BoardPage, responses=error_responses(401, 422))
def list_boards(ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    return boards.list_boards(ctx, account, p.limit, p.cursor)


@router.get("/boards/{board_id}", response_model=BoardDocument, responses=error_responses(401, 404, 422))
def get_board(board_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    # Serialized once, straight from the dicts (a big board's body is large; FastAPI's
    # response validation would walk it all again before serializing it). The model documents
    # it; tests/unit/test_public_shapes.py keeps the dicts and the model in step.
    return Response(boards.get_board(ctx, account, board_id), media_type="application/json")


@router.get("/boards/{board_id}/nodes", response_model=NodePage, responses=error_responses(401, 404, 422))
def list_nodes(board_id: str, ctx: CtxDep, account: AccountDep, p: PageDep) -> Response:
    # Up to 200 nodes: built as dicts, like the board read, and serialized once.
    return FastJSONResponse(boards.list_nodes(ctx, account, board_id, p.limit, p.cursor))


@router.delete("/boards/{board_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=error_responses(401, 404, 422))
def delete_board(board_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    boards.delete_board(ctx, account, board_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/boards/{board_id}/nodes", status_code=status.HTTP_201_CREATED, response_model=Node,
             responses={201: {"links": _NODE_LINKS}, **error_responses(401, 404, 413, 422, 503)})
def create_node(board_id: str, body: NodeCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_node(ctx, account, board_id, body)


@router.get("/nodes/{node_id}", response_model=Node, responses=error_responses(401, 404, 422))
def get_node(node_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.get_node(ctx, account, node_id)


@router.patch("/nodes/{node_id}", response_model=Node, responses=error_responses(401, 404, 413, 422))
def patch_node(node_id: str, body: NodePatch, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.patch_node(ctx, account, node_id, body)


@router.delete("/nodes/{node_id}", response_model=DeletedNode, responses=error_responses(401, 404, 422))
def delete_node(node_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.delete_node(ctx, account, node_id)


@router.post("/boards/{board_id}/edges", status_code=status.HTTP_201_CREATED, response_model=Edge,
             responses={201: {"links": {"DeleteEdge": link("delete", "/v1/edges/{edge_id}",
                                                           edge_id="$response.body#/id")}},
                        **error_responses(401, 404, 409, 413, 422)})
def create_edge(board_id: str, body: EdgeCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_edge(ctx, account, board_id, body)


@router.delete("/edges/{edge_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               responses=error_responses(401, 404, 422))
def delete_edge(edge_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    boards.delete_edge(ctx, account, edge_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
