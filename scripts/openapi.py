"""The OpenAPI documents of the api and assets services, written to `docs/openapi/` (`make openapi`).

The files are a checked artifact: `tests/unit/test_openapi.py` fails when the code's documents
differ from the committed ones, so a change to the public shape shows up in review. `--check`
does the same comparison without writing.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi"


def documents() -> dict[str, dict[str, Any]]:
    """`{"api": ..., "assets": ...}`, built from apps that are created but never started (no
    database, Redis or storage is touched)."""
    from easel_api.main import create_app as create_api
    from easel_assets.main import create_app as create_assets
    from easel_shared.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url="sqlite://",
            storage_backend="local",
            local_storage_dir=tmp,
            admin_token="openapi-document-" + "x" * 16,
            url_signing_secret="openapi-document-" + "x" * 16,
            model_catalog_path=None,
        )
        return {"api": create_api(settings).openapi(), "assets": create_assets(settings).openapi()}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, document in documents().items():
        path = OUT / f"{name}.json"
        text = render(document)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run `make openapi`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
