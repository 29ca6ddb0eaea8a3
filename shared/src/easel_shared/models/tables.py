from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from easel_shared.clock import epoch_ms, utcnow


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


def _now_ts(index: bool = False) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=index))


class Account(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("credits >= 0", name="ck_accounts_credits_nonnegative"),
        CheckConstraint("reserved_credits >= 0", name="ck_accounts_reserved_nonnegative"),
    )

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    api_key_hash: str = Field(index=True, unique=True, max_length=64)
    credits: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    reserved_credits: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # Scheduling (easel_shared.scheduler): generations in flight at once (None: the deployment's
    # ACCOUNT_MAX_RUNNING) and the account's share when accounts wait for the same slots.
    max_running: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    weight: int = Field(default=1, sa_column=Column(Integer, nullable=False, default=1, server_default="1"))
    created_at: datetime = _now_ts()


class AccountSchedule(SQLModel, table=True):
    """An account's place in the fair order (start-time fair queuing, see easel_shared.scheduler).
    Apart from `accounts` on purpose: only transactions holding the scheduler lock write it, while
    an accept holds its account's row (the credit reservation) before it asks for that lock."""

    __tablename__ = "account_schedules"

    account_id: str = Field(primary_key=True, max_length=40)
    # Virtual time: grows by 1/weight per generation dispatched for the account.
    vtime: float = Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0))
    # When the account was last served (SchedulerState.serial then): ties go to the longest waiting.
    served: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class SchedulerState(SQLModel, table=True):
    """One row (id 1). Locking it is the scheduler lock; it holds the system virtual time."""

    __tablename__ = "scheduler_state"

    id: int = Field(default=1, sa_column=Column(Integer, primary_key=True, autoincrement=False))
    vtime: float = Field(default=0.0, sa_column=Column(Float, nullable=False, default=0.0))
    serial: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class LedgerEntry(SQLModel, table=True):
    """Append-only. `delta` changes spendable credits; `balance_after` is spendable after it."""

    __tablename__ = "ledger_entries"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(index=True, foreign_key="accounts.id", max_length=40)
    delta: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(max_length=20)  # grant | reserve | capture | release
    generation_id: str | None = Field(default=None, index=True, max_length=40)
    reason: str | None = Field(default=None, max_length=500)
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    reserved_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _now_ts()


class Board(SQLModel, table=True):
    __tablename__ = "boards"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(index=True, foreign_key="accounts.id", max_length=40)
    name: str = Field(max_length=200)
    # Bumped under the board's row lock; gives edges their connection order.
    edge_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # The seq of the board's last live event, bumped under the board's row lock (see events.py).
    # It starts at the board's creation time in milliseconds, so the stream ids `<seq>-0` stay
    # above the `<ms>-<n>` ids Redis gave boards before events went through the outbox.
    event_seq: int = Field(default_factory=epoch_ms, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _now_ts()
    updated_at: datetime = _now_ts()


class Image(SQLModel, table=True):
    """Immutable stored image. A node points at one; replacing the image makes a new row."""

    __tablename__ = "images"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(index=True, max_length=40)
    storage_key: str = Field(max_length=500)
    thumbnail_key: str = Field(max_length=500)
    content_type: str = Field(max_length=50)
    width: int
    height: int
    size_bytes: int
    source: str = Field(max_length=20)  # upload | generation | crop | asset
    created_at: datetime = _now_ts()


class Node(SQLModel, table=True):
    __tablename__ = "nodes"
    # A board's nodes in id order: the board read and the keyset pages of its node listing.
    __table_args__ = (Index("ix_nodes_board_id_id", "board_id", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    board_id: str = Field(foreign_key="boards.id", max_length=40)
    account_id: str = Field(index=True, max_length=40)
    kind: str = Field(max_length=10)
    text: str = Field(default="", max_length=5000)
    x: float = 0.0
    y: float = 0.0
    prompt: str = Field(default="", max_length=10000)
    model_id: str | None = Field(default=None, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="empty", max_length=20)
    image_id: str | None = Field(default=None, max_length=40)
    error_code: str | None = Field(default=None, max_length=50)
    error_message: str | None = Field(default=None, max_length=500)
    active_generation_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = _now_ts()
    updated_at: datetime = _now_ts()


class Edge(SQLModel, table=True):
    __tablename__ = "edges"
    __table_args__ = (
        # (source, target) also serves the downstream walk of the cycle check.
        UniqueConstraint("source_node_id", "target_node_id", name="uq_edges_pair"),
        # One node's incoming and outgoing edges, already in connection order.
        Index("ix_edges_target_node_id_seq", "target_node_id", "seq"),
        Index("ix_edges_source_node_id_seq", "source_node_id", "seq"),
        # The board read: all of a board's edges in connection order.
        Index("ix_edges_board_id_seq", "board_id", "seq"),
    )

    id: str = Field(primary_key=True, max_length=40)
    board_id: str = Field(foreign_key="boards.id", max_length=40)
    source_node_id: str = Field(max_length=40)
    target_node_id: str = Field(max_length=40)
    seq: int
    created_at: datetime = _now_ts()


#: A generation waiting for the scheduler, and one holding a slot (partial index predicates).
WAITING_SQL = "status = 'queued' AND dispatched_at IS NULL"
IN_FLIGHT_SQL = "status IN ('queued', 'running') AND dispatched_at IS NOT NULL"
#: A generation waiting for upstream nodes to finish (`easel_shared.upstream`).
UPSTREAM_WAIT_SQL = "status = 'queued' AND blocked_by = 'upstream'"


class Generation(SQLModel, table=True):
    __tablename__ = "generations"
    __table_args__ = (
        # One active generation per node, enforced by the database: `active_node_id` holds the
        # node id while queued/running and NULL afterwards (NULLs never collide).
        UniqueConstraint("active_node_id", name="uq_generations_active_node"),
        UniqueConstraint("account_id", "idempotency_key", name="uq_generations_idempotency"),
        # The scheduler's reads (easel_shared.scheduler): an account's waiting work in order, the
        # waiting work of a model, and what holds a slot (in flight) per account and per model.
        Index("ix_generations_waiting", "account_id", "created_at", "id",
              postgresql_where=text(WAITING_SQL), sqlite_where=text(WAITING_SQL)),
        Index("ix_generations_waiting_model", "model_id", "account_id",
              postgresql_where=text(WAITING_SQL), sqlite_where=text(WAITING_SQL)),
        Index("ix_generations_in_flight_account", "account_id",
              postgresql_where=text(IN_FLIGHT_SQL), sqlite_where=text(IN_FLIGHT_SQL)),
        Index("ix_generations_in_flight_model", "model_id",
              postgresql_where=text(IN_FLIGHT_SQL), sqlite_where=text(IN_FLIGHT_SQL)),
        # What waits for an upstream generation of a board: read whenever a generation ends.
        Index("ix_generations_upstream_wait", "board_id",
              postgresql_where=text(UPSTREAM_WAIT_SQL), sqlite_where=text(UPSTREAM_WAIT_SQL)),
    )

    id: str = Field(primary_key=True, max_length=40)
    node_id: str = Field(index=True, max_length=40)
    board_id: str = Field(index=True, max_length=40)
    account_id: str = Field(index=True, max_length=40)
    active_node_id: str | None = Field(default=None, max_length=40)
    status: str = Field(default="queued", index=True, max_length=20)
    model_id: str = Field(max_length=100)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Upstream texts plus the node's prompt: unbounded by design (TEXT).
    prompt: str = Field(sa_column=Column(Text, nullable=False))
    reference_image_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    credits: int
    error_code: str | None = Field(default=None, max_length=50)
    error_message: str | None = Field(default=None, max_length=500)
    image_id: str | None = Field(default=None, max_length=40)
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_fingerprint: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    lease_token: str | None = Field(default=None, max_length=40)
    heartbeat_at: datetime | None = _ts(nullable=True)
    enqueued_at: datetime | None = _ts(nullable=True)
    # Handed to the broker (a `generation.dispatch` was written): from then until it ends, the
    # generation holds a slot of its account and of its model. NULL while it waits its turn.
    dispatched_at: datetime | None = _ts(nullable=True)
    # Why a waiting generation waits: account_limit | model_limit | upstream (None once dispatched).
    blocked_by: str | None = Field(default=None, max_length=20)
    # Accepted with `after_upstream` while direct upstream nodes were generating: the ids of those
    # generations (kept after it is released, as a record). None for every other generation.
    waits_for: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    timings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    request_id: str | None = Field(default=None, max_length=64)
    # {"provider", "id", "urls": {...}}: the vendor's job, saved the moment the vendor accepts it,
    # so a retried run resumes it instead of submitting (and paying) again.
    vendor_job: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # {"queue_position": int|None, "percentage": float|None} while a vendor job runs.
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _now_ts()
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class Run(SQLModel, table=True):
    """Image nodes of one board generated in dependency order (`POST /v1/boards/{id}/runs`): one
    generation per node, all accepted in one transaction. Its status is read from them."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_runs_idempotency"),
        Index("ix_runs_board_id_id", "board_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    board_id: str = Field(max_length=40)
    account_id: str = Field(index=True, max_length=40)
    # [{"node_id", "generation_id"}] in dependency order (the order they were accepted).
    items: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    credits: int = Field(sa_column=Column(BigInteger, nullable=False))
    idempotency_key: str | None = Field(default=None, max_length=255)
    request_fingerprint: str | None = Field(default=None, max_length=64)
    created_at: datetime = _now_ts()
    canceled_at: datetime | None = _ts(nullable=True)


class OutboxEvent(SQLModel, table=True):
    """Written in the same transaction as the change it announces; a relay delivers it after the
    commit (`easel_shared.relay`). `topic` says what the payload is (`easel_shared.messages`)."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # A board's live events, in the order their transactions committed (the board lock).
        UniqueConstraint("board_id", "seq", name="uq_outbox_events_board_seq"),
        # A board's unpublished events in seq order: what a relay reads after every commit.
        Index("ix_outbox_events_pending_board_seq", "board_id", "seq",
              postgresql_where=text("processed_at IS NULL"), sqlite_where=text("processed_at IS NULL")),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    topic: str = Field(index=True, max_length=50)
    account_id: str = Field(max_length=40)
    board_id: str | None = Field(default=None, max_length=40)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # What the row is about when something must find it again: the generation of a dispatch.
    subject_id: str | None = Field(default=None, index=True, max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _now_ts()
    processed_at: datetime | None = _ts(nullable=True, index=True)


class Asset(SQLModel, table=True):
    """A library image. It owns a server-side copy of the bytes (its own storage key), so it
    outlives nodes and deleting it never touches an image a node still shows."""

    __tablename__ = "assets"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(index=True, max_length=40)
    storage_key: str = Field(max_length=500)
    thumbnail_key: str = Field(max_length=500)
    content_type: str = Field(max_length=50)
    width: int
    height: int
    size_bytes: int
    source: str = Field(max_length=20)
    origin_board_id: str | None = Field(default=None, max_length=40)
    origin_node_id: str | None = Field(default=None, max_length=40)
    origin_reason: str = Field(max_length=20)  # node_deleted | board_deleted | late_result
    image_created_at: datetime = _now_ts()
    created_at: datetime = _now_ts()
    # A deleted asset stays as a tombstone (bytes gone), so a late duplicate retention event
    # for the same asset id can never bring it back.
    deleted_at: datetime | None = _ts(nullable=True)
