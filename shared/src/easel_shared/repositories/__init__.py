"""All SQL lives here. Functions take the caller's session and never commit.

Reads on the hot paths (a node change, an accept, a generation's lease and settle) are built once
at import, with their values as parameters: building a SQLAlchemy statement costs more than running
it on an indexed lookup (about 80 of 130 us a call, measured on `graph.targets_of` with SQLite).
Such a statement takes a list of ids as `IDS`."""

from sqlalchemy import String, bindparam

IDS = bindparam("ids", type_=String(), expanding=True)
