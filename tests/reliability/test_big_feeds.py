"""A huge feed must not hold the store (issue 20, item 3): at most
NEWSWATCH_MAX_ENTRIES_PER_POLL entries a poll, newest first, written in transactions of at
most NEWSWATCH_WRITE_BATCH_ENTRIES; the rest at later polls, also when the feed is unchanged
(its validators are kept back until every entry is stored), and `sources list` says how many
wait. SQLite and Postgres; a real feed server; `sources list` through the CLI."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, func, select

from newswatch.config import FileConfig, Settings, SourceConfig
from newswatch.grouping.cluster import EXPIRE_EVERY, Clusterer
from newswatch.grouping.settings import GroupingSettings
from newswatch.service import Service
from newswatch.store.models import Article, Fetch, Source
from tests.cli_support import newswatch
from tests.localserver import conditional

ITEMS = 250
CAP = 100
BATCH = 40
START = datetime(2026, 11, 1, tzinfo=UTC)


def _rss(count: int) -> str:
    """`count` items, item i published i hours after START, listed oldest first (so the
    newest-first choice is the poller's, not the feed's order)."""
    items = "".join(
        f"<item><guid>https://example.org/story/{i}</guid>"
        f"<link>https://example.org/story/{i}</link>"
        f"<title>Story {i}: council votes on harbour plan number {i}</title>"
        f"<description>Report {i} on the harbour plan and its budget item {i}.</description>"
        f"<pubDate>{(START + timedelta(hours=i)).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        "</pubDate></item>"
        for i in range(count)
    )
    channel = f"<channel><title>Big</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'


def _poll(engine, url: str) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        NEWSWATCH_HTTP_MIN_HOST_DELAY=0,
        NEWSWATCH_MAX_ENTRIES_PER_POLL=CAP,
        NEWSWATCH_WRITE_BATCH_ENTRIES=BATCH,
    )
    config = FileConfig(sources=[SourceConfig(name="big", url=url)])
    asyncio.run(Service(engine, config, settings).run_once())


def _state(engine) -> tuple[Source, list[int], Fetch]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        source = session.exec(select(Source)).one()
        guids = session.exec(select(Article.guid)).all()
        fetch = session.exec(select(Fetch).order_by(Fetch.id.desc())).first()  # type: ignore[union-attr]
    numbers = sorted(int(g.rsplit("/", 1)[1]) for g in guids if g)
    assert fetch is not None
    return source, numbers, fetch


def test_a_huge_feed_is_stored_newest_first_over_several_polls(engine, server, cli_env):
    server.routes["/big.rss"] = conditional(_rss(ITEMS), etag='"v1"')
    url = server.url("/big.rss")

    _poll(engine, url)
    source, stored, fetch = _state(engine)
    assert stored == list(range(ITEMS - CAP, ITEMS))  # the newest CAP
    assert (fetch.entries, fetch.new_articles) == (ITEMS, CAP)
    assert source.pending_entries == ITEMS - CAP
    assert source.etag is None  # kept back: the unchanged feed must come again in full
    with Session(engine) as session:  # one transaction a batch (each its own first_seen)
        batches = session.exec(select(func.count(func.distinct(Article.first_seen)))).one()
    assert batches == -(-CAP // BATCH)

    listing = newswatch("sources", "list", env=cli_env)
    assert listing.returncode == 0, listing.stderr
    assert f"{ITEMS - CAP} entries wait for the next polls" in listing.stdout

    _poll(engine, url)  # the feed is unchanged: the next newest CAP
    source, stored, _fetch = _state(engine)
    assert stored == list(range(ITEMS - 2 * CAP, ITEMS))
    assert source.pending_entries == ITEMS - 2 * CAP and source.etag is None

    _poll(engine, url)  # the rest: every entry stored, the validator recorded at last
    source, stored, fetch = _state(engine)
    assert stored == list(range(ITEMS))
    assert (source.pending_entries, source.etag) == (0, '"v1"')
    assert fetch.new_articles == ITEMS - 2 * CAP

    _poll(engine, url)
    source, stored, fetch = _state(engine)
    assert fetch.outcome == "not_modified" and len(stored) == ITEMS
    assert server.hits("/big.rss")[-1].headers.get("If-None-Match") == '"v1"'


def test_grouping_takes_an_archive_newest_first():
    """Backfilled entries come newest first, older than the grouping window: the periodic
    expiry (every EXPIRE_EVERY articles) could forget an article's event while it was being
    added, and the split check then failed with KeyError (every later poll of the source
    failing with it)."""
    clusterer = Clusterer(GroupingSettings())
    rng = random.Random(5)
    latest = START.timestamp() + 3600 * ITEMS * 3
    for i in range(EXPIRE_EVERY + 5):
        words = ["".join(rng.choice("bdfgklmnprstvz") + "aeiou"[j % 5] for j in range(4))]
        words += ["".join(rng.choice("bdfgklmnprstvz") + "ou"[j % 2] for j in range(3))]
        when = latest - 3600 * 3 * i  # three hours older each: past the window soon
        clusterer.add(i + 1, " ".join(words), None, when)
    assert len(clusterer.events) < EXPIRE_EVERY  # the old ones were forgotten
