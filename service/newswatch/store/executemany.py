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
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BindParameter, TextClause
from sqlalchemy.sql.schema import ScalarElementColumnDefault


@lru_cache(maxsize=128)
def _compiled(
    statement: Insert | Update | TextClause, dialect: Dialect, keys: tuple[str, ...]
) -> SQLCompiler:
    """The statement compiled for an executemany of rows of `keys`: once for each statement
    object (those of a module's constants: the ingest path's INSERTs run several times a
    second), not at each call (a compile of the articles' INSERT costs about a millisecond).
    As for an executemany: without the RETURNING of a generated key that Postgres's compiler
    adds to a lone INSERT (nothing would read it)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
    assert isinstance(compiled, SQLCompiler)
    return compiled


def executemany(
    session: Session,
    statement: Insert | Update | TextClause,
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """Run `statement` once per row of `rows` (tuples of the bind parameters `keys`, in that
    order: every column the statement writes, also those with defaults) in the session's
    transaction; returns the rows the database reports changed (an insert skipped on a
    conflict changes none)."""
    if not rows:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    compiled = _compiled(statement, dialect, tuple(keys))
    # The statement's parameters in the order its placeholders take them (positional, as
    # SQLite's "?") or by name (psycopg's "%(name)s"); a parameter not in `keys` is an error.
    names = compiled.positiontup or list(compiled.binds)
    index = {key: i for i, key in enumerate(keys)}
    if missing := [name for name in names if name not in index]:
        # (SQLAlchemy would fill in the columns' Python-side defaults; this path does not.)
        raise ValueError(f"executemany: rows without {', '.join(missing)}")
    columns = list(zip(*rows, strict=True))
    params: list[Any] = list(
        zip(
            *(_converted(columns[index[name]], compiled.binds[name], dialect) for name in names),
            strict=True,
        )
    )
    if compiled.positiontup is None:
        escaped = [compiled.escaped_bind_names.get(name, name) for name in names]
        params = [dict(zip(escaped, values, strict=True)) for values in params]
    result = connection.exec_driver_sql(compiled.string, params)
    return int(result.rowcount)


def _converted(values: Sequence[Any], bind: BindParameter[Any], dialect: Dialect) -> Sequence[Any]:
    """A column's values as the driver takes them, by the column type's bind processor. The
    processor is a function of the value alone: a value object that recurs in the column (an
    article's time in each of its matches, a round's time in each of its rows) is converted
    once."""
    process = bind.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return values
    ids = list(map(id, values))  # the rows hold every value: ids are not reused meanwhile
    done = {key: process(value) for key, value in dict(zip(ids, values, strict=True)).items()}
    return list(map(done.__getitem__, ids))


def executemany_rows(
    session: Session, statement: Insert | Update, rows: Sequence[dict[str, Any]]
) -> int:
    """`executemany` for rows as dicts: one run for each set of columns the rows set (rows of
    one builder all set the same). An INSERT's rows get the scalar Python-side defaults of the
    columns they leave out, and a column with only a server default is left to the database;
    rows that leave out a column whose Python-side default is computed (a function) go
    through SQLAlchemy, which computes it for each row. Returns the rows changed."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(tuple(row.values()))
    changed = 0
    for keys, values in groups.items():
        defaults = _scalar_defaults(statement, keys)
        if defaults is None:
            result = session.execute(statement, [dict(zip(keys, v, strict=True)) for v in values])
            changed += int(result.rowcount)  # type: ignore[attr-defined]
            continue
        filled = tuple(defaults.values())
        all_keys = (*keys, *defaults)
        changed += executemany(session, statement, all_keys, [(*v, *filled) for v in values])
    return changed


def _scalar_defaults(statement: Insert | Update, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The scalar Python-side defaults of the INSERT's columns left out of `keys` (none for
    an UPDATE); None when one of them has a default only SQLAlchemy can compute."""
    if not isinstance(statement, Insert):
        return {}
    defaults: dict[str, Any] = {}
    for column in statement.table.columns:
        if column.key in keys:
            continue
        default = column.default
        if isinstance(default, ScalarElementColumnDefault):
            defaults[column.key] = default.arg
        elif default is not None:
            return None
    return defaults
