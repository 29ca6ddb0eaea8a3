"""Large JSON bodies (the board read, node pages, the live snapshot), serialized by pydantic-core's
encoder, which Easel already has through pydantic: a 5,000-node board's 3.3 MB body takes it
~15 ms, against ~50 ms for the standard library's `json.dumps` (`bench/board_scale.py`). The
body is the same JSON: UTF-8 (as `JSONResponse`'s `ensure_ascii=False`), compact separators, keys
in insertion order."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


def dumps(content: Any) -> bytes:
    return pydantic_core.to_json(content)


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)
