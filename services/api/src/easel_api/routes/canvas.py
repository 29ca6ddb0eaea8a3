"""`/canvas`: the reference canvas, a static page that uses only the public api.

The page loads without credentials (it asks for an API key and keeps it in the tab's
sessionStorage); every call it makes carries the key like any other client's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from easel_api.deps import context_of

router = APIRouter(include_in_schema=False)

_DIR = Path(__file__).resolve().parent.parent / "canvas"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# Only the files shipped in the package are served, by exact name: no path ever reaches the disk.
_FILES = {p.name: p for p in _DIR.iterdir() if p.is_file() and p.suffix in _TYPES} if _DIR.is_dir() else {}

# The page holds an API key: no inline script may run, no other site may frame it, and the key's
# page never leaks its address. Images come from the api (or storage) as blobs the page fetched.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src *; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag), so a new release is picked up at once
}


@router.get("/canvas")
def canvas_root() -> RedirectResponse:
    # Relative module paths in the page resolve against `/canvas/`.
    return RedirectResponse("canvas/", status_code=308)


@router.get("/canvas/config.json")
def canvas_config(request: Request) -> JSONResponse:
    settings = context_of(request).settings
    body: dict[str, Any] = {"assets_url": settings.assets_public_url.rstrip("/")}
    return JSONResponse(body, headers={"Cache-Control": "no-cache"})


@router.get("/canvas/")
@router.get("/canvas/{name}")
def canvas_file(name: str = "index.html") -> Response:
    path = _FILES.get(name)
    if path is None:
        return JSONResponse({"error": {"code": "not_found", "message": "No such canvas file."}}, status_code=404)
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)
