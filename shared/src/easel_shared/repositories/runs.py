"""Run rows (`easel_shared.models.Run`) and the generations they name."""

from __future__ import annotations

from collections.abc import Collection

from sqlmodel import Session, col, select

from easel_shared.models import Generation, Run


def get_account_run(session: Session, account_id: str, board_id: str, run_id: str) -> Run | None:
    run = session.get(Run, run_id)
    return run if run is not None and run.account_id == account_id and run.board_id == board_id else None


def by_idempotency_key(session: Session, account_id: str, key: str) -> Run | None:
    return session.exec(select(Run).where(Run.account_id == account_id, Run.idempotency_key == key)).first()


def generations_by_id(session: Session, ids: Collection[str]) -> dict[str, Generation]:
    if not ids:
        return {}
    return {g.id: g for g in session.exec(select(Generation).where(col(Generation.id).in_(list(ids))))}
