"""All SQL lives here. Functions take the caller's session and never commit.

Reads on the hot paths (a node change, an accept, a generation's lease and settle) are built once
at import, with their values as parameters: building a SQLAlchemy statement costs more than running
it on an indexed lookup (about 80 of 130 us a call, measured on `graph.targets_of` with SQLite).
Such a statement takes a list of ids as `IDS`."""

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from sqlalchemy import String, bindparam
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session as SqlModelSession

IDS = bindparam("ids", type_=String(), expanding=True)

T = TypeVar("T")


def held(session: Session, model: type[T], ids: Iterable[str]) -> dict[str, T]:
    """Those of `ids` that `session` holds already (its identity map), without a round trip: what a
    query would give for them, since a query does not refresh an object the session holds. (It
    would leave out a row deleted since by another transaction; the writers that use this hold the
    board's lock, so no other transaction can delete these rows meanwhile.) The session keeps an
    object nobody changed or references only weakly: such a one may be missing, to be read."""
    out: dict[str, T] = {}
    for i in ids:
        obj = session.identity_map.get(identity_key(model, i))
        if obj is not None and obj not in session.deleted:
            out[i] = obj
    return out


def held_or_read(session: SqlModelSession, model: type[T], ids: Iterable[str],
                 read: Callable[[SqlModelSession, list[str]], Mapping[str, T]]) -> dict[str, T]:
    """`held`, and `read` (a query by ids) for the rest."""
    wanted = list(ids)
    out = held(session, model, wanted)
    missing = [i for i in wanted if i not in out]
    if missing:
        out.update(read(session, missing))
    return out
