from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from easel_api.arriving_decode import read_upload_decoding
from easel_api.deps import AccountDep, CtxDep, UploadRateLimit
from easel_api.schemas.requests import CropRequest
from easel_api.services import images
from easel_shared.schemas import ImageNode, error_responses, redirect_responses

router = APIRouter(prefix="/v1")


_MULTIPART_FILE = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post("/nodes/{node_id}/image", dependencies=[UploadRateLimit], openapi_extra=_MULTIPART_FILE,
             response_model=ImageNode, responses=error_responses(400, 401, 404, 409, 413, 415, 422, 429, 503))
async def upload_image(node_id: str, request: Request, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    data, arriving = await read_upload_decoding(request, ctx.early_decoder)
    return await run_in_threadpool(images.upload, ctx, account, node_id, data, arriving)


@router.post("/nodes/{node_id}/image/crop", response_model=ImageNode,
             responses=error_responses(401, 404, 409, 413, 422, 503))
def crop_image(node_id: str, body: CropRequest, ctx: CtxDep, account: AccountDep) -> dict[str, Any]:
    return images.crop(ctx, account, node_id, body.x, body.y, body.width, body.height)


@router.get("/nodes/{node_id}/image/content", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the node's image (full screen)", 401, 404, 409, 422))
def image_content(node_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(images.node_image_url(ctx, account, node_id, download=False), status_code=302)


@router.get("/nodes/{node_id}/image/download", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the node's image, as an attachment", 401, 404, 409, 422))
def image_download(node_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(images.node_image_url(ctx, account, node_id, download=True), status_code=302)


@router.get("/images/{image_id}/content", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the image", 401, 404, 422))
def image_by_id(image_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(images.image_url(ctx, account, image_id, thumbnail=False), status_code=302)


@router.get("/images/{image_id}/thumbnail", status_code=302, response_class=RedirectResponse,
            responses=redirect_responses("the image's thumbnail", 401, 404, 422, 503))
def thumbnail_by_id(image_id: str, ctx: CtxDep, account: AccountDep) -> RedirectResponse:
    return RedirectResponse(images.image_url(ctx, account, image_id, thumbnail=True), status_code=302)
