"""The public shapes of API.md as pydantic models.

Every model accepts fields it does not know (a newer server may add some: API.md lets the
contract grow by new fields) and keeps them (`model.model_extra`). Statuses and other closed
sets are `Literal`s. Nodes are a union on `kind`, with `UnknownNode` for a kind this client
does not know yet, so one new kind never makes a whole board unreadable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

T = TypeVar("T")

NodeKind = Literal["text", "image", "video"]
NodeStatus = Literal["empty", "generating", "ready", "failed"]
GenerationStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
FINAL_GENERATION_STATUSES: frozenset[GenerationStatus] = frozenset({"succeeded", "failed", "canceled"})
ImageSource = Literal["upload", "generation", "crop", "asset"]
ToolbarAction = Literal["upload", "crop", "fullscreen", "download"]
LedgerKind = Literal["grant", "debit", "reserve", "capture", "release"]
AssetReason = Literal["node_deleted", "board_deleted", "late_result"]


class EaselModel(BaseModel):
    """Base of every response model: unknown fields are kept, never refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Page(EaselModel, Generic[T]):
    """One page of a list (`?limit=` and `?cursor=`); pass `next_cursor` back for the next one."""

    items: list[T]
    next_cursor: str | None = None


# -- accounts ----------------------------------------------------------------------------------


class Account(EaselModel):
    id: str
    name: str
    credits: int
    reserved_credits: int = 0
    #: Generations of the account in flight at once; more wait their turn (`Generation.blocked_by`).
    max_running: int | None = None
    #: The account's share when accounts wait for the same slots.
    weight: int | None = None
    created_at: datetime | None = None


class CreatedAccount(Account):
    """What creating an account answers: the account and its API key (shown this once)."""

    api_key: str


class LedgerEntry(EaselModel):
    id: str
    delta: int
    kind: LedgerKind
    generation_id: str | None = None
    reason: str | None = None
    balance_after: int
    reserved_after: int | None = None
    created_at: datetime


# -- boards, nodes, edges ----------------------------------------------------------------------


class Position(EaselModel):
    x: float = 0.0
    y: float = 0.0


class Image(EaselModel):
    """An image a node (or an asset) holds. `url` and `thumbnail_url` are stable routes that
    answer 302 to a short-lived link: pass them to `download()`."""

    id: str
    url: str
    thumbnail_url: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    source: ImageSource
    created_at: datetime


class ErrorInfo(EaselModel):
    code: str
    message: str


class Reference(EaselModel):
    index: int
    node_id: str
    edge_id: str
    thumbnail_url: str | None = None


class UpstreamText(EaselModel):
    node_id: str
    text: str


class GenerateState(EaselModel):
    enabled: bool
    reason_code: str | None = None
    reason: str | None = None


class GenerationParams(EaselModel):
    """`resolution` ("1K" / "2K"), `aspect_ratio` ("W:H") and an optional `seed`."""

    resolution: str | None = None
    aspect_ratio: str | None = None
    seed: int | None = None


class _NodeBase(EaselModel):
    id: str
    board_id: str
    position: Position = Field(default_factory=Position)
    created_at: datetime
    updated_at: datetime


class TextNode(_NodeBase):
    kind: Literal["text"] = "text"
    text: str = ""


class VideoNode(_NodeBase):
    kind: Literal["video"] = "video"
    references: list[Reference] = Field(default_factory=list)
    upstream_text: list[UpstreamText] = Field(default_factory=list)


class ImageNode(_NodeBase):
    kind: Literal["image"] = "image"
    status: NodeStatus
    prompt: str = ""
    model_id: str | None = None
    params: GenerationParams = Field(default_factory=GenerationParams)
    image: Image | None = None
    error: ErrorInfo | None = None
    references: list[Reference] = Field(default_factory=list)
    upstream_text: list[UpstreamText] = Field(default_factory=list)
    generate: GenerateState
    toolbar: list[ToolbarAction] = Field(default_factory=list)
    active_generation_id: str | None = None


class UnknownNode(_NodeBase):
    """A node of a kind this version of the client does not know (its fields are all kept)."""

    kind: str


def _node_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in ("text", "image", "video") else "unknown"


Node = Annotated[
    Annotated[TextNode, Tag("text")]
    | Annotated[ImageNode, Tag("image")]
    | Annotated[VideoNode, Tag("video")]
    | Annotated[UnknownNode, Tag("unknown")],
    Discriminator(_node_tag),
]


class Board(EaselModel):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


class Edge(EaselModel):
    id: str
    board_id: str
    source_node_id: str
    target_node_id: str
    created_at: datetime


class BoardDetail(Board):
    """A board with its whole graph (`GET /v1/boards/{id}` and the `board.snapshot` event)."""

    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


class DeletedNode(EaselModel):
    """`DELETE /v1/nodes/{id}`: the node's image, if it held one, is now the asset `asset_id`."""

    id: str
    asset_id: str | None = None


# -- models, price, generations ----------------------------------------------------------------


class Model(EaselModel):
    id: str
    name: str
    kind: str = "image"
    max_reference_images: int
    resolutions: list[str]
    aspect_ratios: list[str]
    credits: dict[str, int]


class NodeModel(Model):
    """A model as offered to one node: unavailable when more references are connected than it takes."""

    available: bool
    reason: str | None = None


class Quote(EaselModel):
    credits: int
    balance: int
    affordable: bool


class Progress(EaselModel):
    queue_position: int | None = None
    percentage: float | None = None


class Generation(EaselModel):
    id: str
    node_id: str
    board_id: str
    status: GenerationStatus
    model_id: str
    params: GenerationParams = Field(default_factory=GenerationParams)
    prompt: str = ""
    reference_image_ids: list[str] = Field(default_factory=list)
    credits: int
    error: ErrorInfo | None = None
    image_id: str | None = None
    progress: Progress | None = None
    #: While it waits for the scheduler: its place among the work waiting for the same slots (an estimate).
    queue_position: int | None = None
    #: While it waits for the scheduler: "account_limit", "model_limit" or "upstream".
    blocked_by: str | None = None
    #: Accepted with `after_upstream` while upstream nodes generated: the generations it waited for.
    waits_for: list[str] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_GENERATION_STATUSES


# -- runs --------------------------------------------------------------------------------------

RunStatus = Literal["running", "succeeded", "failed", "canceled"]


class RunQuoteItem(EaselModel):
    node_id: str
    model_id: str
    credits: int


class RunQuote(EaselModel):
    """The price of a whole run; `order` is the order its nodes will be accepted in."""

    credits: int
    balance: int
    affordable: bool
    order: list[str] = Field(default_factory=list)
    nodes: list[RunQuoteItem] = Field(default_factory=list)


class RunItem(EaselModel):
    node_id: str
    generation: Generation


class Run(EaselModel):
    """Image nodes of one board generated in dependency order."""

    id: str
    board_id: str
    status: RunStatus
    credits: int
    items: list[RunItem] = Field(default_factory=list)
    created_at: datetime
    canceled_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status != "running"


# -- assets library ----------------------------------------------------------------------------


class AssetOrigin(EaselModel):
    board_id: str | None = None
    node_id: str | None = None
    reason: AssetReason


class Asset(EaselModel):
    id: str
    image: Image
    origin: AssetOrigin
    created_at: datetime
