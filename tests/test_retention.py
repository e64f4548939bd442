"""Retention on SQLite and Postgres: what goes, what stays, dry runs, and the CLI command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlmodel import Session

from newswatch import retention
from newswatch.config import Settings
from newswatch.retention import prune
from newswatch.store.alert_models import Notification
from newswatch.store.models import Article, Fetch, Source
from newswatch.store.page_urls import PageURL
from tests.test_cli import newswatch

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def settings(**kw: float) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


def fill(engine: Engine) -> dict[str, int]:
    """Two sources with a year of daily fetches; page URLs, notifications and one article."""
    with Session(engine) as session:
        sources = [
            Source(
                name=f"s{i}",
                url=f"http://s{i}.example/feed",
                configured_url=f"http://s{i}.example/feed",
            )
            for i in range(2)
        ]
        session.add_all(sources)
        session.flush()
        ids = [s.id for s in sources]
        fetches = [
            {"source_id": sid, "url": "http://x/", "outcome": "ok", "started_at": NOW - d * DAY}
            for sid in ids
            for d in range(365)
        ]
        session.execute(insert(Fetch.__table__), fetches)  # type: ignore[attr-defined]
        pages = [
            {
                "source_id": ids[0],
                "url": f"http://s0.example/{d}",
                "outcome": "stored",
                "first_seen": NOW - d * DAY,
            }
            for d in (1, 100, 179, 181, 400)
        ]
        session.execute(insert(PageURL.__table__), pages)  # type: ignore[attr-defined]
        session.add(
            Article(
                url="http://s0.example/400",
                canonical_url="http://s0.example/400",
                title="old story",
                content_hash="h",
                source_id=ids[0],
                first_seen=NOW - 400 * DAY,
            )
        )
        for n, (status, age) in enumerate(
            [("sent", 10), ("sent", 100), ("dead", 100), ("pending", 100), ("sending", 100)]
        ):
            session.add(
                Notification(
                    rule="r",
                    channel="ops",
                    event_id=n,
                    idempotency_key=f"k{n}",
                    status=status,
                    not_before=NOW - age * DAY,
                )
            )
        session.commit()
    return {"fetches": 2 * 365}


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            name: session.execute(select(func.count()).select_from(model)).scalar_one()
            for name, model in (
                ("fetches", Fetch),
                ("page_urls", PageURL),
                ("notifications", Notification),
                ("articles", Article),
            )
        }


def test_prune_deletes_what_is_older_than_each_setting(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(engine)
    monkeypatch.setattr(retention, "CHUNK", 50)  # several transactions per table
    dry = prune(engine, settings(), now=NOW, dry_run=True)
    assert counts(engine)["fetches"] == 730  # a dry run deletes nothing
    pruned = prune(engine, settings(), now=NOW)
    assert pruned == dry
    # 31 daily fetches per source stay (ages 0..30: the cutoff itself is kept); page URLs
    # up to 180 days; sent and dead notifications up to 90 days, pending and in-flight ones
    # whatever their age.
    assert pruned.as_dict() == {"fetches": 2 * 334, "page_urls": 2, "notifications": 2}
    assert counts(engine) == {"fetches": 62, "page_urls": 3, "notifications": 3, "articles": 1}
    with Session(engine) as session:
        left = session.execute(select(Notification.status)).scalars()  # type: ignore[call-overload]
        assert sorted(left) == ["pending", "sending", "sent"]
        oldest = session.execute(select(func.min(Fetch.started_at))).scalar_one()
        assert oldest.replace(tzinfo=UTC) == NOW - 30 * DAY
    assert prune(engine, settings(), now=NOW).as_dict() == dict.fromkeys(pruned.as_dict(), 0)


def test_zero_keeps_a_table_forever(engine: Engine) -> None:
    fill(engine)
    keep = settings(
        NEWSWATCH_RETAIN_FETCHES_DAYS=0,
        NEWSWATCH_RETAIN_PAGE_URLS_DAYS=0,
        NEWSWATCH_RETAIN_DELIVERIES_DAYS=7,
    )
    pruned = prune(engine, keep, now=NOW)
    assert pruned.as_dict() == {"fetches": 0, "page_urls": 0, "notifications": 3}
    assert counts(engine)["fetches"] == 730 and counts(engine)["page_urls"] == 5


def test_a_pruned_page_url_that_became_an_article_is_still_known(engine: Engine) -> None:
    from newswatch.store.page_urls import already_seen

    fill(engine)
    prune(engine, settings(), now=NOW)
    with Session(engine) as session:
        source_id = session.execute(select(Source.id).where(Source.name == "s0")).scalar_one()
        known = already_seen(session, source_id, ["http://s0.example/400", "http://s0.example/181"])
    # /400 was stored as an article: never fetched again; /181 gave none and may be retried.
    assert known == {"http://s0.example/400"}


def test_db_prune_command(cli_env: dict[str, str], engine: Engine) -> None:
    fill(engine)
    cli_env["NEWSWATCH_RETAIN_FETCHES_DAYS"] = "1"
    dry = newswatch("db", "prune", "--dry-run", env=cli_env)
    assert dry.returncode == 0, dry.stderr
    # Relative to the real clock: every fill row is at least a day older than NOW.
    assert "would delete: 730 fetches" in dry.stdout
    assert counts(engine)["fetches"] == 730
    done = newswatch("db", "prune", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "deleted: 730 fetches" in done.stdout and counts(engine)["fetches"] == 0


def test_the_service_prunes_once_a_day(engine: Engine) -> None:
    import asyncio

    from newswatch.config import FileConfig
    from newswatch.service import Service

    service = Service(engine, FileConfig(), settings())
    seen: dict[str, object] = {}

    async def inspect(stop: asyncio.Event) -> None:
        assert service.scheduler is not None
        job = service.scheduler.get_job("retention")
        seen["in"] = job.next_run_time - datetime.now(UTC)
        seen["every"] = job.trigger.interval
        stop.set()

    service.companions.append(inspect)
    asyncio.run(service.run(install_signals=False))
    assert seen["every"] == timedelta(days=1)
    assert timedelta(minutes=9) < seen["in"] <= timedelta(minutes=10)  # type: ignore[operator]
    # The job itself: the fill's fetches are all older than 30 days of the real clock but
    # the last month's.
    fill(engine)
    asyncio.run(service._prune_job())
    assert counts(engine)["fetches"] < 730
