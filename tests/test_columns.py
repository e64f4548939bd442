"""UTCDateTime: aware UTC in and out, stored on SQLite as SQLAlchemy's own DATETIME text."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.dialects import sqlite

from newswatch.store.columns import UTCDateTime


def test_sqlite_text_is_sqlalchemys_datetime_format() -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    reference = sqlite.DATETIME().bind_processor(dialect)
    rng = random.Random(5)
    values = [datetime(2026, 12, 7, 2, 56, 21), datetime(1, 1, 2), datetime(9999, 12, 31, 23, 59)]
    values += [datetime(1970, 1, 1) + timedelta(seconds=rng.random() * 3e9) for _ in range(500)]
    for value in values:
        naive = value.replace(tzinfo=None)
        assert ours(naive.replace(tzinfo=UTC)) == reference(naive)
        shifted = naive.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
        assert ours(shifted) == reference(naive)  # stored as naive UTC whatever the zone
    assert ours(None) is None


def test_round_trip_through_sqlite(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
    )
    table.metadata.create_all(engine)
    moments = [
        datetime(2026, 12, 7, 2, 56, 21, tzinfo=UTC),
        datetime(2026, 12, 7, 5, 56, 21, 5, tzinfo=timezone(timedelta(hours=3))),
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "at": m} for i, m in enumerate(moments)])
        stored = conn.execute(text("SELECT at FROM t ORDER BY id")).scalars().all()
        back = conn.execute(select(table.c.at).order_by(table.c.id)).scalars().all()
        # SQL written by users compares the text: the format sorts as time does.
        later = conn.execute(text("SELECT id FROM t WHERE at > '2026-12-07 02:56:21'")).all()
    assert stored == ["2026-12-07 02:56:21.000000", "2026-12-07 02:56:21.000005"]
    assert back == moments and all(b.tzinfo == UTC for b in back)
    assert later == [(0,), (1,)]  # "…21.000000" sorts after "…21"
    engine.dispose()
