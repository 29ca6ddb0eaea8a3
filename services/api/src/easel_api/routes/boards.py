from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from easel_api.deps import AccountDep, CtxDep
from easel_api.schemas.requests import BoardCreate, EdgeCreate, NodeCreate, NodePatch
from easel_api.services import boards
from easel_shared.web import PageDep

router = APIRouter(prefix="/v1")


@router.post("/boards", status_code=status.HTTP_201_CREATED)
def create_board(body: BoardCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_board(ctx, account, body.name)


@router.get("/boards")
def list_boards(ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    return boards.list_boards(ctx, account, p.limit, p.cursor)


@router.get("/boards/{board_id}", response_class=JSONResponse)
def get_board(board_id: str, ctx: CtxDep, account: AccountDep) -> JSONResponse:
    # Serialized once, straight from the dicts (a big board's body is large; FastAPI's
    # response validation would walk it all again before the same json.dumps).
    return JSONResponse(boards.get_board(ctx, account, board_id))


@router.get("/boards/{board_id}/nodes")
def list_nodes(board_id: str, ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    return boards.list_nodes(ctx, account, board_id, p.limit, p.cursor)


@router.delete("/boards/{board_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_board(board_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    boards.delete_board(ctx, account, board_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/boards/{board_id}/nodes", status_code=status.HTTP_201_CREATED)
def create_node(board_id: str, body: NodeCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_node(ctx, account, board_id, body)


@router.get("/nodes/{node_id}")
def get_node(node_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.get_node(ctx, account, node_id)


@router.patch("/nodes/{node_id}")
def patch_node(node_id: str, body: NodePatch, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.patch_node(ctx, account, node_id, body)


@router.delete("/nodes/{node_id}")
def delete_node(node_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.delete_node(ctx, account, node_id)


@router.post("/boards/{board_id}/edges", status_code=status.HTTP_201_CREATED)
def create_edge(board_id: str, body: EdgeCreate, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return boards.create_edge(ctx, account, board_id, body)


@router.delete("/edges/{edge_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_edge(edge_id: str, ctx: CtxDep, account: AccountDep) -> Response:
    boards.delete_edge(ctx, account, edge_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
