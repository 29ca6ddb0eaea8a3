"""The api's own public shapes (accounts, the ledger, the model catalog, quotes). The shapes the
assets service and the live events share (nodes, edges, boards, generations, images, assets,
the error envelope, list pages) are in `easel_shared.schemas`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from easel_shared.clock import rfc3339
from easel_shared.models import Account as AccountRow
from easel_shared.models import LedgerEntry as LedgerRow
from easel_shared.schemas import Generation, Page, PublicModel, Timestamp
from easel_shared.settings import DEFAULT_ACCOUNT_MAX_RUNNING

LedgerKind = Literal["grant", "debit", "reserve", "capture", "release"]


class Account(PublicModel):
    id: str
    name: str
    credits: int = Field(description="what can be spent now")
    reserved_credits: int
    max_running: int = Field(description="generations of the account in flight at once (the account's own "
                                         "limit, else the deployment's ACCOUNT_MAX_RUNNING); more wait their turn")
    weight: int = Field(description="the account's share when accounts wait for the same slots")
    created_at: Timestamp

    @classmethod
    def of(cls, account: AccountRow, default_max_running: int = DEFAULT_ACCOUNT_MAX_RUNNING) -> Account:
        return cls(id=account.id, name=account.name, credits=account.credits,
                   reserved_credits=account.reserved_credits,
                   max_running=account.max_running if account.max_running is not None else default_max_running,
                   weight=account.weight, created_at=_ts(rfc3339(account.created_at)))


class CreatedAccount(Account):
    api_key: str = Field(description="shown this once")


class LedgerEntry(PublicModel):
    id: str
    delta: int
    kind: LedgerKind
    generation_id: str | None
    reason: str | None
    balance_after: int
    reserved_after: int
    created_at: Timestamp

    @classmethod
    def of(cls, entry: LedgerRow) -> LedgerEntry:
        return cls.model_validate({
            "id": entry.id, "delta": entry.delta, "kind": entry.kind, "generation_id": entry.generation_id,
            "reason": entry.reason, "balance_after": entry.balance_after, "reserved_after": entry.reserved_after,
            "created_at": rfc3339(entry.created_at),
        })


class ModelInfo(PublicModel):
    """An image model of the catalog."""

    id: str
    name: str
    kind: Literal["image"]
    max_reference_images: int
    resolutions: list[str]
    aspect_ratios: list[str]
    credits: dict[str, int] = Field(description="price per resolution")


class NodeModel(ModelInfo):
    """A model as offered to one node: unavailable when more references are connected than it takes."""

    available: bool
    reason: str | None


class Quote(PublicModel):
    credits: int
    balance: int
    affordable: bool


class RunQuoteItem(PublicModel):
    node_id: str
    model_id: str
    credits: int


class RunQuote(PublicModel):
    """The price of a whole run: the sum of its nodes' generations."""

    credits: int
    balance: int
    affordable: bool
    order: list[str] = Field(description="the node ids in the order they will be accepted (dependency order)")
    nodes: list[RunQuoteItem] = Field(description="each node's model and price, in that order")


class RunItem(PublicModel):
    node_id: str
    generation: Generation


RunStatus = Literal["running", "succeeded", "failed", "canceled"]


class Run(PublicModel):
    """Image nodes of one board generated in dependency order, each after the ones it depends on."""

    id: str
    board_id: str
    status: RunStatus = Field(
        description="running while a generation of it is active; then succeeded (all did), canceled (the run "
                    "was canceled, or one of its generations), or failed (one failed)")
    credits: int = Field(description="the price of the whole run, reserved when it was accepted")
    items: list[RunItem] = Field(description="one per node, in dependency order")
    created_at: Timestamp
    canceled_at: Timestamp | None


class LedgerPage(Page[LedgerEntry]):
    pass


class ModelPage(Page[ModelInfo]):
    pass


class NodeModelPage(Page[NodeModel]):
    pass


def _ts(value: str | None) -> str:
    assert value is not None
    return value
