"""Many rows through one statement, compiled once, without SQLAlchemy's per-row bookkeeping.

`session.execute(statement, rows)` builds, for each row, a dict of every bind parameter and
then the driver's tuple, in its generic execution context: at the alerts stage's 25 rule
matches an article that costs more than the database spends inserting them. Here SQLAlchemy
compiles the statement for the session's dialect (the same SQL it would send), each value is
converted by its column type's own bind processor (the same text in the store, the same types
on Postgres), and the driver's `executemany` gets the rows (docs/decisions/0151).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.sql.dml import Insert, Update
from sqlmodel import Session


def executemany(
    session: Session,
    statement: Insert | Update,
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """Run `statement` once per row of `rows` (tuples of the bind parameters `keys`, in that
    order) in the session's transaction; returns the rows the database reports changed (an
    insert skipped on a conflict changes none)."""
    if not rows:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    # The statement's parameters in the order its placeholders take them (positional, as
    # SQLite's "?") or by name (psycopg's "%(name)s"); a parameter not in `keys` is an error.
    names = compiled.positiontup or list(compiled.binds)
    index = {key: i for i, key in enumerate(keys)}
    order = [
        (index[name], compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in names
    ]
    params: list[Any] = [
        tuple(row[i] if process is None else process(row[i]) for i, process in order)
        for row in rows
    ]
    if compiled.positiontup is None:
        escaped = [compiled.escaped_bind_names.get(name, name) for name in names]
        params = [dict(zip(escaped, values, strict=True)) for values in params]
    result = connection.exec_driver_sql(compiled.string, params)
    return int(result.rowcount)
