"""Request bodies. Unknown fields are refused so typos surface as clear 422s."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

# What generation parameters may hold, documented for clients; checked by the use cases
# (`params_problem`, `validate_params`), whose messages say which parameter is wrong and why.
_PARAMS_SCHEMA = {
    "type": "object",
    "properties": {
        "resolution": {"anyOf": [{"type": "string", "enum": ["1K", "2K"]}, {"type": "null"}]},
        "aspect_ratio": {"anyOf": [{"type": "string", "pattern": "^[1-9][0-9]{0,3}:[1-9][0-9]{0,3}$"},
                                   {"type": "null"}]},
        "seed": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, {"type": "null"}]},
    },
    "additionalProperties": False,
    "description": "null means the model's default",
}
Params = Annotated[dict[str, Any], WithJsonSchema(_PARAMS_SCHEMA)]
_MODEL_ID = Field(min_length=1, max_length=100, examples=["easel-studio"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    credits: int = Field(default=0, ge=0, le=10**12)


class CreditsChange(Strict):
    amount: int = Field(ge=-(10**12), le=10**12)
    reason: str = Field(min_length=1, max_length=500)


class AccountScheduling(Strict):
    """Only the fields sent change."""

    max_running: int | None = Field(default=None, ge=1, le=1000,
                                    description="generations in flight at once; null: the deployment's default "
                                                "(ACCOUNT_MAX_RUNNING)")
    weight: int = Field(default=1, ge=1, le=100, description="share when accounts wait for the same slots")


class BoardCreate(Strict):
    name: str = Field(min_length=1, max_length=200)


class Position(Strict):
    x: float = Field(allow_inf_nan=False)
    y: float = Field(allow_inf_nan=False)


class NodeCreate(Strict):
    kind: Literal["text", "image", "video"]
    text: str | None = Field(default=None, max_length=5000)
    position: Position | None = None
    asset_id: str | None = Field(default=None, max_length=64)


class NodePatch(Strict):
    text: str | None = Field(default=None, max_length=5000)
    prompt: str | None = Field(default=None, max_length=10000)
    position: Position | None = None
    model_id: str | None = Field(default=None, max_length=100)
    params: Params | None = None


class EdgeCreate(Strict):
    source_node_id: str = Field(min_length=1, max_length=64)
    target_node_id: str = Field(min_length=1, max_length=64)


class CropRequest(Strict):
    x: int
    y: int
    width: int
    height: int


class QuoteRequest(Strict):
    model_id: str = _MODEL_ID
    params: Params = Field(default_factory=dict)


class GenerationCreate(Strict):
    model_id: str = _MODEL_ID
    prompt: str | None = Field(default=None, max_length=10000)
    params: Params = Field(default_factory=dict)
    expected_credits: int | None = Field(default=None, ge=0)
    after_upstream: bool = Field(
        default=False,
        description="while a node directly upstream is generating: accept now and start when it has finished "
                    "(blocked_by \"upstream\"), with the prompt and references it then shows, instead of "
                    "409 upstream_in_progress; canceled and refunded if it fails or is canceled")


#: Most image nodes one run generates.
MAX_RUN_NODES = 100


class RunQuoteRequest(Strict):
    node_ids: list[str] = Field(min_length=1, max_length=MAX_RUN_NODES,
                                description="image nodes of the board, each once, in any order")
    model_id: str | None = Field(default=None, min_length=1, max_length=100,
                                 description="the model of every node; omitted: each node's own (its model_id)")
    params: Params | None = Field(default=None,
                                  description="the parameters of every node; omitted: each node's own (its params)")

    @field_validator("node_ids")
    @classmethod
    def _each_once(cls, ids: list[str]) -> list[str]:
        if len(set(ids)) != len(ids):
            raise ValueError("each node may be named once")
        if any(not 1 <= len(i) <= 64 for i in ids):
            raise ValueError("node ids are 1 to 64 characters")
        return ids


class RunCreate(RunQuoteRequest):
    expected_credits: int | None = Field(default=None, ge=0, description="the run's total price, as quoted")
