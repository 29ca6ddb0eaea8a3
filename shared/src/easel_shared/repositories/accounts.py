from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from easel_shared.ids import new_id
from easel_shared.models import Account, LedgerEntry
from easel_shared.repositories.paging import newest_first


def hash_api_key(api_key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "esk_" + secrets.token_urlsafe(32)


def create_account(session: Session, name: str, credits: int) -> tuple[Account, str]:
    api_key = new_api_key()
    account = Account(id=new_id("acc"), name=name, api_key_hash=hash_api_key(api_key), credits=0)
    session.add(account)
    session.flush()
    if credits:
        grant(session, account.id, credits, reason="initial credits")
    session.refresh(account)
    return account, api_key


def by_api_key(session: Session, api_key: str) -> Account | None:
    return by_api_key_hash(session, hash_api_key(api_key))


def by_api_key_hash(session: Session, key_hash: str) -> Account | None:
    return session.exec(select(Account).where(Account.api_key_hash == key_hash)).first()


def get(session: Session, account_id: str) -> Account | None:
    return session.get(Account, account_id)


# What a balance change returns for its ledger entry, read by the UPDATE itself (no second query).
_BALANCE = (col(Account.credits), col(Account.reserved_credits))


def _entry(session: Session, account_id: str, balance: tuple[int, int], delta: int, kind: str,
           generation_id: str | None, reason: str | None) -> LedgerEntry:
    """A ledger row; `balance` is (credits, reserved credits) after the change."""
    entry = LedgerEntry(
        id=new_id("led"),
        account_id=account_id,
        delta=delta,
        kind=kind,
        generation_id=generation_id,
        reason=reason,
        balance_after=balance[0],
        reserved_after=balance[1],
    )
    session.add(entry)
    return entry


def _reload(session: Session, account_id: str) -> Account:
    account = session.exec(
        select(Account).where(Account.id == account_id).execution_options(populate_existing=True)
    ).one()
    return account


def grant(session: Session, account_id: str, amount: int, reason: str) -> Account:
    """Add (or, with a negative amount, remove) spendable credits. Never below zero."""
    result = session.execute(
        update(Account)
        .where(col(Account.id) == account_id, col(Account.credits) + amount >= 0)
        .values(credits=col(Account.credits) + amount)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ValueError("insufficient")
    account = _reload(session, account_id)
    _entry(session, account_id, (account.credits, account.reserved_credits), amount,
           "grant" if amount >= 0 else "debit", None, reason)
    return account


def reserve(session: Session, account_id: str, amount: int, generation_id: str) -> bool:
    """Move credits from spendable to reserved in one conditional UPDATE: two concurrent
    reservations can never take the balance below zero."""
    balance = session.execute(
        update(Account)
        .where(col(Account.id) == account_id, col(Account.credits) >= amount)
        .values(credits=col(Account.credits) - amount, reserved_credits=col(Account.reserved_credits) + amount)
        .returning(*_BALANCE)
    ).first()
    if balance is None:
        return False
    _entry(session, account_id, (balance[0], balance[1]), -amount, "reserve", generation_id, None)
    return True


def capture(session: Session, account_id: str, amount: int, generation_id: str) -> None:
    """A reservation becomes a charge: reserved goes down, spendable stays (it was taken at reserve)."""
    balance = session.execute(
        update(Account)
        .where(col(Account.id) == account_id)
        .values(reserved_credits=col(Account.reserved_credits) - amount)
        .returning(*_BALANCE)
    ).one()
    _entry(session, account_id, (balance[0], balance[1]), 0, "capture", generation_id, None)


def release(session: Session, account_id: str, amount: int, generation_id: str, reason: str) -> None:
    """A reservation is given back to spendable credits (failure, cancel, deletion)."""
    balance = session.execute(
        update(Account)
        .where(col(Account.id) == account_id)
        .values(credits=col(Account.credits) + amount, reserved_credits=col(Account.reserved_credits) - amount)
        .returning(*_BALANCE)
    ).one()
    _entry(session, account_id, (balance[0], balance[1]), amount, "release", generation_id, reason)


def ledger_page(session: Session, account_id: str, limit: int, cursor: str | None) -> list[LedgerEntry]:
    return newest_first(session, select(LedgerEntry).where(LedgerEntry.account_id == account_id),
                        LedgerEntry.id, limit, cursor)


def reserved_total(session: Session) -> int:
    """Credits held by generations in flight, across accounts (a gauge for operators)."""
    total = session.exec(select(func.coalesce(func.sum(Account.reserved_credits), 0))).one()
    return int(total)
