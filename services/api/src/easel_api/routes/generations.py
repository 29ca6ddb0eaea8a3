from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from easel_api.deps import AccountDep, CtxDep, GenerateRateLimit
from easel_api.schemas.requests import GenerationCreate, QuoteRequest
from easel_api.schemas.responses import ModelPage, NodeModelPage, Quote
from easel_api.services import generations
from easel_shared.schemas import Generation, GenerationPage, accepted_responses, error_responses, link
from easel_shared.views import generation_view
from easel_shared.web import PageDep, page

router = APIRouter(prefix="/v1")

_GENERATION_LINKS = {
    "GetGeneration": link("get", "/v1/generations/{generation_id}", generation_id="$response.body#/id"),
    "CancelGeneration": link("post", "/v1/generations/{generation_id}/cancel", generation_id="$response.body#/id"),
}


@router.get("/models", response_model=ModelPage, responses=error_responses(401, 422))
def list_models(ctx: CtxDep, _account: AccountDep) -> dict[str, Any]:
    return generations.list_models(ctx)


@router.get("/nodes/{node_id}/models", response_model=NodeModelPage, responses=error_responses(401, 404, 422))
def node_models(node_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return {"items": generations.node_models(ctx, account, node_id), "next_cursor": None}


@router.post("/nodes/{node_id}/quote", response_model=Quote, responses=error_responses(401, 404, 413, 422))
def quote(node_id: str, body: QuoteRequest, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return generations.quote(ctx, account, node_id, body.model_id, body.params)


@router.post("/nodes/{node_id}/generations", status_code=202, dependencies=[GenerateRateLimit],
             response_model=Generation,
             responses=accepted_responses("generation", _GENERATION_LINKS, 401, 402, 404, 409, 413, 422, 429))
def create_generation(
    node_id: str,
    body: GenerationCreate,
    request: Request,
    response: Response,
    ctx: CtxDep,
    account: AccountDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    view, created = generations.accept(
        ctx, account, node_id, body, idempotency_key, getattr(request.state, "request_id", None)
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return view


@router.get("/generations/{generation_id}", response_model=Generation, responses=error_responses(401, 404, 422))
def get_generation(generation_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return generations.get(ctx, account, generation_id)


@router.get("/nodes/{node_id}/generations", response_model=GenerationPage,
            responses=error_responses(401, 404, 422))
def node_generations(node_id: str, ctx: CtxDep, account: AccountDep, p: PageDep) -> dict[str, Any]:
    rows, waiting = generations.history(ctx, account, node_id, p.limit, p.cursor)
    return page(rows, p.limit, lambda g: generation_view(g, waiting.get(g.id)), lambda g: g.id)


@router.post("/generations/{generation_id}/cancel", response_model=Generation,
             responses=error_responses(401, 404, 422))
def cancel_generation(generation_id: str, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return generations.cancel(ctx, account, generation_id)
