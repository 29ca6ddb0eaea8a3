"""Large JSON bodies built as dicts (the node pages), serialized by orjson, which the board read
uses too (`easel_shared.views.board_document`): ~4-5 ms for a 5,000-node board's 3.5 MB,
against ~15 ms for pydantic-core's encoder and ~30 ms for the standard library's `json.dumps`
(`bench/board_scale.py`). The body is the same JSON: UTF-8 (as `JSONResponse`'s
`ensure_ascii=False`), compact separators, keys in insertion order."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
