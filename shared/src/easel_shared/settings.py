"""Configuration for every Easel process, read from the environment (pydantic-settings).

`get_settings()` is cached and never built at import time, so tests and the dev runner can set
the environment first. `load_settings_or_exit()` turns a bad configuration into one clear line.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ACCOUNT_MAX_RUNNING = 4


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///.data/easel.db"
    redis_url: str = "redis://127.0.0.1:6379/0"

    storage_backend: Literal["local", "s3"] = "local"
    local_storage_dir: str = ".data/objects"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "easel"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    presigned_url_ttl_seconds: int = Field(default=300, ge=10, le=3600)

    # Required by the services that use them (see REQUIRED_BY_SERVICE), optional elsewhere: the
    # worker never checks admin tokens, the migration job needs only the database.
    admin_token: str | None = Field(default=None, min_length=16)
    url_signing_secret: str | None = Field(default=None, min_length=16)

    api_port: int = Field(default=8000, ge=1, le=65535)
    assets_port: int = Field(default=8001, ge=1, le=65535)
    api_public_url: str = "http://127.0.0.1:8000"
    assets_public_url: str = "http://127.0.0.1:8001"

    model_catalog_path: str | None = None
    builtin_model_latency_ms: int = Field(default=0, ge=0)
    builtin_model_blocked_words: str = ""
    vendor_poll_seconds: float = Field(default=1.0, gt=0, le=60)

    generation_max_attempts: int = Field(default=3, ge=1)
    generation_timeout_seconds: int = Field(default=600, ge=1)
    heartbeat_interval_seconds: float = Field(default=2.0, gt=0)
    stale_heartbeat_seconds: float = Field(default=30.0, gt=0)
    requeue_after_seconds: float = Field(default=30.0, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    celery_visibility_timeout_seconds: int = Field(default=3600, ge=60)
    worker_concurrency: int = Field(default=2, ge=1)
    # Generations of one account in flight at once (handed to the broker or running); an admin
    # sets another limit per account. See easel_shared.scheduler.
    account_max_running: int = Field(default=DEFAULT_ACCOUNT_MAX_RUNNING, ge=1)
    # Waiting generations one fill pass sends, in one transaction under the scheduler lock; a pass
    # that reaches it leaves the rest to the next pass, at once. See easel_shared.scheduler.
    scheduler_fill_batch: int = Field(default=500, ge=1, le=10_000)
    worker_heartbeat_file: str = "/tmp/easel-worker-heartbeat"
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)  # 0: no metrics endpoint

    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # How long delivered outbox rows (live events, dispatches, retention events) are kept.
    outbox_retention_seconds: float = Field(default=86400.0, ge=60)
    # Unreferenced images (and `images/` objects with no row) older than this are deleted. It must
    # exceed the time between writing an image's bytes and committing its row (seconds), hence
    # the floor; see easel_worker.jobs.gc.
    orphan_grace_seconds: float = Field(default=24 * 3600.0, ge=60)
    orphan_sweep_interval_seconds: float = Field(default=600.0, gt=0)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # Memory all image decodes of one process may hold at once (see easel_shared.imaging.budget).
    decode_memory_budget_mb: int = Field(default=512, ge=16)
    # Uploads decoded while their body arrives (easel_api.arriving_decode): how many at once per api
    # process (0: none; the others are decoded once they have arrived), and how long one may wait
    # for its bytes before it is dropped and decoded the usual way.
    upload_early_decodes: int = Field(default=2, ge=0, le=64)
    upload_early_decode_window_seconds: float = Field(default=1.0, gt=0, le=60)
    # Largest request body outside uploads (JSON bodies above all); uploads have their own limit.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # Webhooks (easel_shared.webhooks). Receivers must be https and public unless allowed here.
    webhook_allow_http: bool = False
    webhook_allow_private_networks: bool = False
    # Seconds between attempts after the first (Standard Webhooks' schedule: about a day).
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    # An endpoint whose every attempt failed for this long is disabled.
    webhook_disable_after_seconds: float = Field(default=86400.0, ge=60)
    # The Celery queues `python -m easel_worker` consumes (run webhook workers apart with `webhooks`).
    worker_queues: str = "generations,webhooks"

    rate_limit_generate_per_minute: int = Field(default=120, ge=0)
    rate_limit_upload_per_minute: int = Field(default=120, ge=0)

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    otel_exporter_otlp_endpoint: str | None = None

    @model_validator(mode="after")
    def _s3_needs_credentials(self) -> Settings:
        if self.storage_backend == "s3":
            missing = [
                name
                for name, value in (
                    ("S3_ACCESS_KEY_ID", self.s3_access_key_id),
                    ("S3_SECRET_ACCESS_KEY", self.s3_secret_access_key),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"STORAGE_BACKEND=s3 needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _retry_schedule_parses(self) -> Settings:
        self.retry_schedule  # noqa: B018  (raises on a bad value, at start)
        return self

    @property
    def retry_schedule(self) -> list[float]:
        try:
            delays = [float(p) for p in self.webhook_retry_schedule.split(",") if p.strip()]
        except ValueError:
            raise ValueError("WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds") from None
        if any(d <= 0 or d != d or d > 7 * 86400 for d in delays):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE delays must be between 0 and 7 days")
        return delays

    @property
    def blocked_words(self) -> list[str]:
        return [w.strip() for w in self.builtin_model_blocked_words.split(",") if w.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # required fields come from the environment


def describe_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]).upper()
        msg = err["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


REQUIRED_BY_SERVICE: dict[str, tuple[str, ...]] = {
    "api": ("admin_token", "url_signing_secret"),
    "assets": ("url_signing_secret",),
    "worker": ("url_signing_secret",),
}


def missing_for(settings: Settings, service: str) -> list[str]:
    return [name.upper() for name in REQUIRED_BY_SERVICE.get(service, ()) if not getattr(settings, name)]


def load_settings_or_exit(service: str) -> Settings:
    """Build settings, or stop the process with a single readable line (no traceback)."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"easel-{service}: configuration error: {describe_error(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    missing = missing_for(settings, service)
    if missing:
        print(f"easel-{service}: configuration error: {', '.join(missing)}: required setting is missing",
              file=sys.stderr)
        raise SystemExit(2)
    return settings
