from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from easel_api.deps import AccountDep, CtxDep, GenerateRateLimit
from easel_api.schemas.requests import RunCreate, RunQuoteRequest
from easel_api.schemas.responses import Run, RunQuote
from easel_api.services import runs
from easel_shared.schemas import accepted_responses, error_responses, link

router = APIRouter(prefix="/v1")

_RUN = "$response.body#/id"
_BOARD = "$response.body#/board_id"
_RUN_LINKS = {
    "GetRun": link("get", "/v1/boards/{board_id}/runs/{run_id}", board_id=_BOARD, run_id=_RUN),
    "CancelRun": link("post", "/v1/boards/{board_id}/runs/{run_id}/cancel", board_id=_BOARD, run_id=_RUN),
}


@router.post("/boards/{board_id}/runs/quote", response_model=RunQuote,
             responses=error_responses(401, 404, 413, 422))
def quote_run(board_id: str, body: RunQuoteRequest, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return runs.quote(ctx, account, board_id, body)


@router.post("/boards/{board_id}/runs", status_code=202, dependencies=[GenerateRateLimit], response_model=Run,
             responses=accepted_responses("run", _RUN_LINKS, 401, 402, 404, 409, 413, 422, 429))
def create_run(
    board_id: str,
    body: RunCreate,
    request: Request,
    response: Response,
    ctx: CtxDep,
    account: AccountDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    view, created = runs.create(ctx, account, board_id, body, idempotency_key,
                                getattr(request.state, "request_id", None))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return view


@router.get("/boards/{board_id}/runs/{run_id}", response_model=Run, responses=error_responses(401, 404, 422))
def get_run(board_id: str, run_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return runs.get(ctx, account, board_id, run_id)


@router.post("/boards/{board_id}/runs/{run_id}/cancel", response_model=Run, responses=error_responses(401, 404, 422))
def cancel_run(board_id: str, run_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return runs.cancel(ctx, account, board_id, run_id)
