"""`python -m easel_shared.migrate`: bring the database to the newest schema (Alembic)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from easel_shared.db import normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str) -> None:
    import os

    from sqlalchemy.engine import make_url

    url = make_url(normalize_url(database_url))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(url.database)) or ".", exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def main() -> None:
    from pydantic import ValidationError
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class _MigrateSettings(BaseSettings):
        model_config = SettingsConfigDict(extra="ignore")
        database_url: str = "sqlite:///.data/easel.db"

    try:
        url = _MigrateSettings().database_url
    except ValidationError as exc:  # pragma: no cover - only on a malformed environment
        print(f"easel-migrate: configuration error: {exc.errors()[0]['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        upgrade(url)
    except Exception as exc:
        print(f"easel-migrate: migration failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print("easel-migrate: database is at the newest schema")


if __name__ == "__main__":
    main()
