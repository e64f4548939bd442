"""event_sources (store/event_sources.py, migration 0016): each source's first sighting of
each event, kept by the database through every change of sightings and of articles' events,
on both engines; and the growth the events list reads from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, select, text, update

from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_source, store_batch
from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.event_sources import EventSource
from newswatch.store.event_views import growth_of
from newswatch.store.events import Merge, SplitOff, apply_regroupings, place_articles
from newswatch.store.models import Article, Sighting, Source, table_of
from newswatch.store.search import matching_articles

ARTICLES = table_of(Article)
SIGHTINGS = table_of(Sighting)
SOURCES = table_of(Source)
PAIRS = table_of(EventSource)
T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _stored(session) -> dict[tuple[int, int], datetime]:
    rows = session.execute(select(PAIRS.c.event_id, PAIRS.c.source_id, PAIRS.c.first_seen))
    return {(e, s): at for e, s, at in rows}


def _counted(session) -> dict[tuple[int, int], datetime]:
    """The same pairs counted afresh from the sightings of grouped articles."""
    first = func.min(SIGHTINGS.c.first_seen)
    query = (
        select(ARTICLES.c.event_id, SIGHTINGS.c.source_id, first)
        .join(SIGHTINGS, SIGHTINGS.c.article_id == ARTICLES.c.id)
        .where(ARTICLES.c.event_id.is_not(None))
        .group_by(ARTICLES.c.event_id, SIGHTINGS.c.source_id)
    )
    return {(e, s): at for e, s, at in session.execute(query)}


def _in_step(engine: Engine) -> dict[tuple[int, int], datetime]:
    with session_scope(engine) as session:
        stored, counted = _stored(session), _counted(session)
    assert stored == counted
    return stored


def _store(session, source: Source, url: str, at: datetime) -> int:
    entry = ParsedEntry(url=url, title=f"Report {url}", text="A report.", language="en")
    return store_batch(session, [(source, entry)], now=at)[0].id


def _place(session, article_id: int, event_id: int) -> None:
    place_articles(
        session,
        [
            {
                "id": article_id,
                "event_id": event_id,
                "duplicate_of": None,
                "group_stage": "test",
                "group_score": 1.0,
                "group_explain": None,
                "fingerprint": None,
            }
        ],
    )


def test_every_change_keeps_the_first_sightings_in_step(engine):
    with session_scope(engine) as session:
        a, b, c = (ensure_source(session, name) for name in ("a", "b", "c"))
        one = _store(session, a, "https://x.org/1", T0)
        two = _store(session, b, "https://x.org/2", T0 + timedelta(minutes=1))
        three = _store(session, c, "https://x.org/3", T0 + timedelta(minutes=2))
        ids = {"a": a.id, "b": b.id, "c": c.id}
    assert _in_step(engine) == {}  # nothing grouped yet
    with session_scope(engine) as session:  # grouped by UPDATE (the scaled mode's way)
        _place(session, one, 10)
        _place(session, two, 10)
        _place(session, three, 20)
    assert _in_step(engine) == {
        (10, ids["a"]): T0,
        (10, ids["b"]): T0 + timedelta(minutes=1),
        (20, ids["c"]): T0 + timedelta(minutes=2),
    }
    with session_scope(engine) as session:  # a later sighting of a grouped article
        source_c = session.get(Source, ids["c"])
        _store(session, source_c, "https://x.org/1", T0 + timedelta(minutes=5))
        source_a = session.get(Source, ids["a"])  # and a source it had already: no change
        _store(session, source_a, "https://x.org/2", T0 + timedelta(minutes=6))
    pairs = _in_step(engine)
    assert pairs[(10, ids["c"])] == T0 + timedelta(minutes=5)
    assert pairs[(10, ids["a"])] == T0
    with session_scope(engine) as session:  # event 20 absorbed into 10
        apply_regroupings(session, [Merge(gone=20, keep=10)], T0 + timedelta(minutes=7))
    pairs = _in_step(engine)
    assert pairs[(10, ids["c"])] == T0 + timedelta(minutes=2)  # the absorbed event's earlier one
    assert not any(event == 20 for event, _s in pairs)
    with session_scope(engine) as session:  # article one split off into event 30
        apply_regroupings(session, [SplitOff(10, 30, (one,))], T0 + timedelta(minutes=8))
    pairs = _in_step(engine)
    assert pairs[(30, ids["a"])] == T0 and pairs[(30, ids["c"])] == T0 + timedelta(minutes=5)
    assert pairs[(10, ids["a"])] == T0 + timedelta(minutes=6)  # its sighting of article two
    with session_scope(engine) as session:  # sightings and articles deleted (users' SQL)
        session.execute(
            delete(SIGHTINGS).where(
                SIGHTINGS.c.article_id == two, SIGHTINGS.c.source_id == ids["a"]
            )
        )
    assert (10, ids["a"]) not in _in_step(engine)
    with session_scope(engine) as session:
        session.execute(delete(ARTICLES).where(ARTICLES.c.id == one))
    assert not any(event == 30 for event, _s in _in_step(engine))
    with session_scope(engine) as session:  # a source removed takes its rows along
        session.execute(delete(SOURCES).where(SOURCES.c.id == ids["c"]))
    assert set(_in_step(engine)) == {(10, ids["b"])}


def test_growth_counts_sources_first_seen_in_the_hour(engine):
    with session_scope(engine) as session:
        sources = [ensure_source(session, f"s{i}") for i in range(4)]
        old = _store(session, sources[0], "https://x.org/old", T0 - timedelta(hours=3))
        _place(session, old, 5)
        # s0 again (not new to the event), s1 and s2 new within the hour, s3 after `as_of`
        for n, (source, minutes) in enumerate(zip(sources, (-30, -20, -10, 10), strict=True)):
            _store(session, source, "https://x.org/old", T0 + timedelta(minutes=minutes))
            article = _store(session, source, f"https://x.org/{n}", T0 + timedelta(minutes=minutes))
            _place(session, article, 5)
        quiet = _store(session, sources[0], "https://x.org/quiet", T0 - timedelta(hours=2))
        _place(session, quiet, 6)
    with session_scope(engine) as session:
        assert growth_of(session, [5, 6, 7], T0) == {5: 2, 6: 0, 7: 0}
        assert growth_of(session, [5], T0 + timedelta(minutes=15)) == {5: 3}


def test_migration_fills_pairs_and_stems_stored_articles(store_url):
    """Articles and sightings stored before migration 0016: their pairs are counted and
    their index entries written again with stems."""
    engine = make_engine(store_url)
    try:
        upgrade(engine, "0014")
        with session_scope(engine) as session:
            source = session.execute(
                text(
                    "INSERT INTO sources (name, url, configured_url, kind, origin, enabled, "
                    "options, consecutive_errors, pending_entries, created_at, "
                    "consecutive_gone) VALUES "
                    "('old', 'x', 'x', 'feed', 'cli', true, '{}', 0, 0, :now, 0) RETURNING id"
                ),
                {"now": T0},
            ).scalar_one()
            article = session.execute(
                text(
                    "INSERT INTO articles (title, text, language, first_seen, content_hash, "
                    "source_id, event_id) VALUES ('Elections held', '', 'en', :at, 'h', :s, 4) "
                    "RETURNING id"
                ),
                {"at": T0, "s": source},
            ).scalar_one()
            session.execute(
                text(
                    "INSERT INTO sightings (article_id, source_id, first_seen) VALUES (:a, :s, :at)"
                ),
                {"a": article, "s": source, "at": T0},
            )
        with session_scope(engine) as session:  # before: words only as they are
            found = session.execute(
                select(ARTICLES.c.id).where(matching_articles(session, "election"))
            )
            assert list(found) == []
        upgrade(engine)
        assert _in_step(engine) == {(4, source): T0}
        with session_scope(engine) as session:
            found = session.execute(
                select(ARTICLES.c.id).where(matching_articles(session, "election"))
            )
            assert [r[0] for r in found] == [article]
        with session_scope(engine) as session:  # the triggers are in place after the migration
            session.execute(update(ARTICLES).where(ARTICLES.c.id == article).values(event_id=8))
        assert _in_step(engine) == {(8, source): T0}
    finally:
        engine.dispose()


def test_deletes_of_many_rows_keep_the_pairs_in_step_counted_once_a_statement(engine):
    """Sightings of a source and articles of several events deleted, each in one
    statement: the pairs stay in step on both engines. On Postgres the delete triggers run
    once a statement over the deleted rows (decision 0217): each ran once a row, recounting
    its pair or its event (23 s for a source of 20,000 sightings)."""
    with session_scope(engine) as session:
        sources = [ensure_source(session, f"s{i}") for i in range(3)]
        ids = [s.id for s in sources]
        articles = []
        for n in range(12):  # three events of four articles, each seen by the three sources
            at = T0 + timedelta(minutes=n)
            url = f"https://x.org/{n}"
            articles.append(_store(session, sources[n % 3], url, at))
            for k, other in enumerate(sources):
                if k != n % 3:
                    _store(session, other, url, at + timedelta(minutes=30 + k))
            _place(session, articles[-1], 100 + n // 4)
    before = _in_step(engine)
    assert len(before) == 9
    postgres = engine.dialect.name == "postgresql"
    gone = [articles[0], articles[5], articles[6], articles[11]]  # in every event
    with session_scope(engine) as session:
        if postgres:  # count this transaction's calls of the triggers' functions
            session.execute(text("SET LOCAL track_functions = 'pl'"))
        session.execute(delete(SIGHTINGS).where(SIGHTINGS.c.source_id == ids[1]))
        session.execute(delete(ARTICLES).where(ARTICLES.c.id.in_(gone)))
        calls = dict(
            session.execute(text("SELECT funcname, calls FROM pg_stat_xact_user_functions")).all()
            if postgres
            else []
        )
    after = _in_step(engine)
    assert set(after) == {(e, s) for e, s in before if s != ids[1]}
    # The earliest sightings went with articles 0, 5, 6 and 11: later ones count now.
    assert after[(100, ids[0])] == T0 + timedelta(minutes=3)
    if postgres:
        # The articles' sightings go by their foreign key: a second delete on sightings.
        assert calls == {
            "event_sources_sightings_deleted": 2,
            "event_sources_articles_deleted": 1,
        }
