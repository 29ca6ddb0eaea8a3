"""The public shapes (API.md) both web services and the live events share: one pydantic model per
object. Routes declare them (`response_model=`), so the OpenAPI documents say exactly what goes
on the wire; `docs/openapi/*.json` are generated from them (`make openapi`).

The hot builders stay plain dicts: `easel_shared.views` builds nodes, edges, boards and
generations as dicts (a 5,000-node board read serializes once, without a model per node), and
the worker stages the same dicts as events. Those dicts must validate against these models
exactly (same keys, same order, no extra field): `tests/unit/test_public_shapes.py` checks every
builder, so a field added to a view without its model (or the reverse) fails the suite.

Every model forbids fields it does not declare (`additionalProperties: false`): a response is
the model and nothing else. Clients should still accept new fields (API.md lets the contract
grow); the typed client (`easel_client`) does.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, NotRequired, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, with_config
from typing_extensions import TypedDict

from easel_shared.domain.generation import NodeStatus
from easel_shared.domain.graph import NodeKind

__all__ = ["NodeKind", "NodeStatus"]

T = TypeVar("T")

#: RFC 3339 UTC text, as `easel_shared.clock.rfc3339` writes it (kept as text: the wire is the view's).
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

GenerationStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
ImageSource = Literal["upload", "generation", "crop", "asset"]
ToolbarAction = Literal["upload", "crop", "fullscreen", "download"]
GenerateReasonCode = Literal["already_generating", "upstream_in_progress", "downstream_in_progress", "prompt_required"]
AssetReason = Literal["node_deleted", "board_deleted", "late_result"]
BlockedBy = Literal["account_limit", "model_limit", "upstream"]


class PublicModel(BaseModel):
    """A response body: exactly the declared fields."""

    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------------------ #


class ValidationProblem(PublicModel):
    loc: list[str]
    message: str


class ErrorBody(BaseModel):
    """`code` (stable snake_case) and `message` (one human sentence); some errors add fields
    beside them (e.g. `blocking_node_ids`, `retry_after`, `credits`)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    details: list[ValidationProblem] | None = Field(default=None, description="validation_error: the problems")
    error_count: int | None = Field(default=None, description="validation_error: all problems, when more are")
    blocking_node_ids: list[str] | None = Field(default=None, description="the generating nodes in the way")
    retry_after: int | None = Field(default=None, description="seconds to wait (also the Retry-After header)")
    credits: int | None = Field(default=None, description="the price of the generation (or run) asked for")
    node_id: str | None = Field(default=None, description="runs: the node whose generation broke the rule")


class ErrorEnvelope(PublicModel):
    """Every 4xx and 5xx answer of both services."""

    error: ErrorBody


_ERROR_DESCRIPTIONS = {
    400: "Malformed request (`invalid_multipart`, `duplicate_credentials`)",
    401: "Missing or wrong credentials (`unauthenticated`)",
    402: "Not enough credits (`insufficient_credits`)",
    404: "No such resource in this account (`not_found`)",
    409: "Conflicts with the resource's state",
    413: "Body too large (`request_too_large`, `file_too_large`)",
    415: "Not a PNG, JPEG or WebP (`unsupported_format`)",
    422: "Invalid request (`validation_error` and the domain's 422 codes)",
    429: "Rate limited (`rate_limited`, with Retry-After)",
    503: "A dependency is unavailable; retry (Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: the error statuses it can answer, each with the envelope."""
    return {s: {"model": ErrorEnvelope, "description": _ERROR_DESCRIPTIONS[s]} for s in statuses}


def accepted_responses(what: str, links: dict[str, Any], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route answering 202 with `what` it accepted, idempotent by key (an
    `Idempotent-Replayed` header), with its `links` and its errors."""
    replayed = {"description": f"`true` when an earlier request with this Idempotency-Key made the {what}",
                "schema": {"type": "string"}}
    return {202: {"links": links, "headers": {"Idempotent-Replayed": replayed}}, **error_responses(*statuses)}


def redirect_responses(what: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route answering 302 to a short-lived URL of `what`, and its errors."""
    return {302: {"description": f"Redirect to a short-lived URL of {what}",
                  "headers": {"Location": {"description": "the short-lived URL", "schema": {"type": "string"}}}},
            **error_responses(*statuses)}


# -- lists ------------------------------------------------------------------------------------- #


class Page(PublicModel, Generic[T]):
    """One page of a list (`?limit=`, `?cursor=`); `next_cursor` asks for the next one."""

    items: list[T]
    next_cursor: str | None


# -- images, nodes, edges, boards -------------------------------------------------------------- #


class Image(PublicModel):
    id: str
    url: str
    thumbnail_url: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    source: ImageSource
    created_at: Timestamp


class Position(PublicModel):
    x: float
    y: float


class ErrorInfo(PublicModel):
    code: str
    message: str


class Reference(PublicModel):
    index: int
    node_id: str
    edge_id: str
    thumbnail_url: str | None


class UpstreamText(PublicModel):
    node_id: str
    text: str


class GenerateState(PublicModel):
    enabled: bool
    reason_code: GenerateReasonCode | None
    reason: str | None


@with_config(ConfigDict(extra="forbid"))
class NodeParams(TypedDict, total=False):
    """What the node will generate with; each one optional until Generate (null: the model's default)."""

    resolution: str | None
    aspect_ratio: str | None
    seed: int | None


class TextNode(PublicModel):
    id: str
    board_id: str
    kind: Literal["text"]
    position: Position
    created_at: Timestamp
    updated_at: Timestamp
    text: str


class VideoNode(PublicModel):
    id: str
    board_id: str
    kind: Literal["video"]
    position: Position
    created_at: Timestamp
    updated_at: Timestamp
    references: list[Reference]
    upstream_text: list[UpstreamText]


class ImageNode(PublicModel):
    id: str
    board_id: str
    kind: Literal["image"]
    position: Position
    created_at: Timestamp
    updated_at: Timestamp
    references: list[Reference] = Field(description="upstream image nodes, in connection order")
    upstream_text: list[UpstreamText] = Field(description="upstream text nodes, in connection order")
    status: NodeStatus
    prompt: str
    model_id: str | None
    params: NodeParams
    image: Image | None
    error: ErrorInfo | None = Field(description="set while status is failed")
    generate: GenerateState
    toolbar: list[ToolbarAction]
    active_generation_id: str | None


Node = Annotated[TextNode | ImageNode | VideoNode, Field(discriminator="kind")]


class DeletedNode(PublicModel):
    """`DELETE /v1/nodes/{id}`: the node's image, if it held one, is now the asset `asset_id`."""

    id: str
    asset_id: str | None


class Edge(PublicModel):
    id: str
    board_id: str
    source_node_id: str
    target_node_id: str
    created_at: Timestamp


class Board(PublicModel):
    id: str
    name: str
    created_at: Timestamp
    updated_at: Timestamp


class BoardDocument(Board):
    """A board with its whole graph: `GET /v1/boards/{id}` and the `board.snapshot` event."""

    nodes: list[Node]
    edges: list[Edge] = Field(description="in connection order")


# -- generations ------------------------------------------------------------------------------- #


@with_config(ConfigDict(extra="forbid"))
class GenerationParams(TypedDict):
    """Every parameter the model sees (a seed is drawn at acceptance when none was given)."""

    resolution: str
    aspect_ratio: str
    seed: NotRequired[int]


class Progress(PublicModel):
    queue_position: int | None
    percentage: float | None = Field(description="0 to 1, where the vendor tells")


class Generation(PublicModel):
    id: str
    node_id: str
    board_id: str
    status: GenerationStatus
    model_id: str
    params: GenerationParams
    prompt: str = Field(description="as sent to the model: upstream text first, then the node's prompt")
    reference_image_ids: list[str]
    credits: int
    error: ErrorInfo | None
    image_id: str | None
    attempts: int
    timings: dict[str, int] = Field(description="milliseconds per stage")
    progress: Progress | None = Field(description="while a vendor job runs")
    queue_position: int | None = Field(
        description="while it waits for the scheduler: its place (from 1) among the work waiting for the same "
                    "slots, an estimate (see README, Scheduling); null once handed to a worker")
    blocked_by: BlockedBy | None = Field(
        description="while it waits for the scheduler: what it waits for; null once handed to a worker")
    waits_for: list[str] = Field(
        description="accepted with after_upstream while upstream nodes were generating: the generations it waited "
                    "for (blocked_by upstream until they end); empty otherwise")
    request_id: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


# -- assets library ---------------------------------------------------------------------------- #


class AssetOrigin(PublicModel):
    board_id: str | None
    node_id: str | None
    reason: AssetReason


class Asset(PublicModel):
    """An image kept in the library; `image.id` is the asset's own copy (served by assets)."""

    id: str
    image: Image
    origin: AssetOrigin
    created_at: Timestamp


# -- list pages (named, so the documents and generated clients get readable names) ------------- #


class BoardPage(Page[Board]):
    pass


class NodePage(Page[Node]):
    pass


class GenerationPage(Page[Generation]):
    pass


class AssetPage(Page[Asset]):
    pass


# -- live events ------------------------------------------------------------------------------- #


class NodeDeleted(PublicModel):
    id: str
    board_id: str
    asset_id: str | None


class BoardSnapshotEvent(PublicModel):
    """The first event of a fresh stream: the whole board."""

    id: str
    event: Literal["board.snapshot"]
    data: BoardDocument


class NodeEvent(PublicModel):
    id: str
    event: Literal["node.created", "node.updated"]
    data: Node


class NodeDeletedEvent(PublicModel):
    id: str
    event: Literal["node.deleted"]
    data: NodeDeleted


class EdgeEvent(PublicModel):
    id: str
    event: Literal["edge.created", "edge.deleted"]
    data: Edge


class GenerationEvent(PublicModel):
    id: str
    event: Literal["generation.queued", "generation.started", "generation.progress", "generation.succeeded",
                   "generation.failed", "generation.canceled"]
    data: Generation


BoardStreamEvent = Annotated[
    BoardSnapshotEvent | NodeEvent | NodeDeletedEvent | EdgeEvent | GenerationEvent,
    Field(discriminator="event"),
]
EVENT_MODELS: tuple[type[PublicModel], ...] = (
    BoardSnapshotEvent, NodeEvent, NodeDeletedEvent, EdgeEvent, GenerationEvent,
)


def event_stream_schema(ref_prefix: str = "#/components/schemas/") -> dict[str, Any]:
    """The `text/event-stream` schema: one of the event models, told apart by `event`. The
    models themselves go into the document's components (`easel_shared.web.document_models`)."""
    mapping: dict[str, str] = {}
    for model in EVENT_MODELS:
        for name in get_args(model.model_fields["event"].annotation):
            mapping[name] = ref_prefix + model.__name__
    return {
        "oneOf": [{"$ref": ref_prefix + m.__name__} for m in EVENT_MODELS],
        "discriminator": {"propertyName": "event", "mapping": mapping},
    }


EVENT_STREAM_DESCRIPTION = (
    "Server-sent events (`text/event-stream`). Each frame is `id: <seq>-0`, `event: <name>` and "
    "`data: <JSON>`; the schema gives, per event name, the model its `data` line holds. A fresh "
    "connection starts with `board.snapshot`; `Last-Event-ID` replays what was missed. Comment "
    "lines (`: keep-alive`) come every 15 s, and an empty `id` line before the stream ends asks "
    "the client to reconnect without an id (a fresh snapshot)."
)


# -- OpenAPI links ----------------------------------------------------------------------------- #


def link(method: str, path: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link from a response to the operation `method path`, its parameters taken
    from the response (`"$response.body#/id"`): what a client (or a stateful fuzzer) does next."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}
