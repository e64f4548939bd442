"""The scaled mode's grouper in the store (Postgres): the grouping lock, the lease that
fences a deposed grouper, the ungrouped articles it claims, its guarded writes and the log
of its batches (docs/decisions/0166, 0167).

The lock is a session advisory lock on a connection of its own: Postgres frees it when that
connection drops (the holder died), and a standby blocked on it gets it at once. The lock
alone cannot stop a holder that lost its connection but still runs; the lease's epoch can:
every batch updates the lease row `WHERE epoch = <its epoch>` first, in the batch's own
transaction, and a successor bumps the epoch before it groups anything. The row lock orders
the two: a deposed batch either commits before the bump (and the successor replays it) or
finds the epoch moved and writes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, Row, and_, bindparam, func, insert, select, text, update
from sqlmodel import Session

from newswatch.store.articles import StoredArticle
from newswatch.store.columns import UTCDateTime, utcnow
from newswatch.store.grouper_models import GrouperBatch, GrouperLease, LateSighting
from newswatch.store.models import Article, Source, table_of

ARTICLES = table_of(Article)
SOURCES = table_of(Source)
LEASE = table_of(GrouperLease)
BATCHES = table_of(GrouperBatch)
LATE_SIGHTINGS = table_of(LateSighting)
A = ARTICLES.c
L = LEASE.c
B = BATCHES.c

LEASE_ID = 1
LOCK_NAME = "newswatch-grouper"
# Fetch workers NOTIFY this after each stored batch; the leader NOTIFYs the second after
# each grouped batch (standbys replay it).
ARTICLES_CHANNEL = "newswatch_articles"
GROUPED_CHANNEL = "newswatch_grouped"
_KEY = "SELECT hashtext(%s || '.' || coalesce(current_schema(), ''))"


class Deposed(Exception):
    """The lease's epoch moved: another grouper leads now; this batch wrote nothing."""


class Overlap(Exception):
    """Articles of the batch were grouped meanwhile by someone else; it wrote nothing."""


@dataclass(frozen=True)
class Lease:
    epoch: int
    holder: str
    heartbeat_at: datetime
    origin_seq: int


# --- raw connections: the lock and the wake-ups ------------------------------------------
def raw_connection(engine: Engine) -> psycopg.Connection[Any]:
    """A psycopg connection of its own (out of the pool), autocommit, with the engine's
    settings (search path, statement timeout): for the lock and for LISTEN."""
    pooled = engine.raw_connection()
    conn: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
    pooled.detach()  # never handed back to the pool: its session holds the lock
    conn.rollback()
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # the lock is waited on, however long
    return conn


def _lock_key(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_KEY, (LOCK_NAME,)).fetchone()
    assert row is not None
    return int(row[0])


def wait_grouping_lock(conn: psycopg.Connection[Any]) -> None:
    """Block until `conn` holds the grouping lock (its holder's session ended)."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(conn),))


def wake_listeners(conn: psycopg.Connection[Any]) -> None:
    """Wake this process's own LISTEN loop (and the standbys': harmless) at once, as a
    leader's batch would: used when the lock comes, so a takeover does not wait a poll."""
    conn.execute("SELECT pg_notify(%s, '')", (GROUPED_CHANNEL,))


def lock_alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether the lock's session is still there (a dropped connection freed the lock)."""
    if conn.closed or conn.broken:
        return False
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def listen(conn: psycopg.Connection[Any], channels: Sequence[str]) -> None:
    for channel in channels:
        conn.execute(f"LISTEN {channel}")


def wait_for_notifications(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Wait up to `timeout` seconds for a notification on the LISTENed channels; drain the
    ones already there. Whether any came."""
    came = False
    for _note in conn.notifies(timeout=timeout, stop_after=1):
        came = True
    # More may have queued behind the first: one wake-up serves them all.
    for _note in conn.notifies(timeout=0.0):
        came = True
    return came


_NOTIFY = text("SELECT pg_notify(:channel, coalesce(current_schema(), ''))")


def notify(session: Session, channel: str) -> None:
    """NOTIFY `channel` when the caller's transaction commits (never for one rolled back).
    The payload is the store's schema: stores in other schemas of the database share the
    channel, and a listener may tell them apart."""
    session.execute(_NOTIFY, {"channel": channel})


# --- the lease ---------------------------------------------------------------------------
def read_lease(session: Session) -> Lease | None:
    row = session.execute(select(LEASE).where(L.id == LEASE_ID)).first()
    if row is None:
        return None
    return Lease(row.epoch, row.holder, row.heartbeat_at, row.origin_seq)


def take_lease(session: Session, holder: str) -> int:
    """Become the leader: bump the epoch (waiting for a batch of the previous leader that
    holds the row to end) and name the holder; the new epoch. (set_lease_origin names the
    origin of its state, in the same transaction.)"""
    now = utcnow()
    session.execute(
        text(
            "INSERT INTO grouper_lease (id, epoch, holder, heartbeat_at, origin_seq) "
            "VALUES (:id, 0, :holder, :now, 0) ON CONFLICT (id) DO NOTHING"
        ).bindparams(bindparam("now", type_=UTCDateTime)),
        {"id": LEASE_ID, "holder": holder, "now": now},
    )
    epoch = session.execute(
        update(LEASE)
        .where(L.id == LEASE_ID)
        .values(
            epoch=L.epoch + 1,
            holder=holder,
            heartbeat_at=now,
        )
        .returning(L.epoch)
    ).scalar_one()
    return int(epoch)


def set_lease_origin(session: Session, origin_seq: int) -> None:
    session.execute(update(LEASE).where(L.id == LEASE_ID).values(origin_seq=origin_seq))


def hold_lease(session: Session, epoch: int) -> None:
    """The fence, first in every batch's transaction: the lease row is locked until the
    batch ends, and Deposed when the epoch is no longer ours."""
    held = session.execute(
        update(LEASE)
        .where(L.id == LEASE_ID, L.epoch == epoch)
        .values(heartbeat_at=utcnow())
        .returning(L.epoch)
    ).first()
    if held is None:
        raise Deposed(f"the grouper lease moved past epoch {epoch}")


def bump_epoch(session: Session) -> int:
    """Move the epoch on without taking the lease (an operator's fence, and the tests')."""
    return int(
        session.execute(
            update(LEASE).where(L.id == LEASE_ID).values(epoch=L.epoch + 1).returning(L.epoch)
        ).scalar_one()
    )


# --- the articles ------------------------------------------------------------------------
_ARTICLE_COLUMNS = (
    A.id,
    A.source_id,
    SOURCES.c.name.label("source_name"),
    A.url,
    A.title,
    A.summary,
    A.text,
    A.published,
    A.first_seen,
    A.language,
)


def _stored(row: Row[Any]) -> StoredArticle:
    return StoredArticle(
        id=row.id,
        source_id=row.source_id,
        source_name=row.source_name,
        url=row.url,
        title=row.title,
        summary=row.summary,
        text=row.text,
        published=row.published,
        first_seen=row.first_seen,
        language=row.language,
        is_new=True,
    )


def ungrouped_articles(
    session: Session, limit: int, up_to: int | None = None
) -> list[StoredArticle]:
    """The first `limit` articles nobody grouped yet, in id order, as the grouping takes
    new articles (fetch workers store them with no event and no stage); with `up_to`, none
    past that id (a settled horizon)."""
    bound = [] if up_to is None else [A.id <= up_to]
    query = (
        select(*_ARTICLE_COLUMNS)
        .select_from(ARTICLES.outerjoin(SOURCES, SOURCES.c.id == A.source_id))
        .where(A.event_id.is_(None), A.group_stage.is_(None), *bound)
        .order_by(A.id)
        .limit(limit)
    )
    return [_stored(row) for row in session.execute(query)]


# --- the id horizon: articles grouped in id order, whatever order writers commit in ------
# Fetch workers insert articles beside each other: one may commit id 101 before another
# commits id 100. Grouping 101 first would make the events depend on commit timing, not on
# the articles (docs/decisions/0211). So the grouper takes only ids up to a *settled*
# horizon: the highest id handed out at some moment, once every transaction that was
# writing articles then has ended (committed: its rows are visible; rolled back: gone for
# good). A writer holds a shared transaction-level advisory lock from before it takes
# article ids until it ends (join_article_writers), so the writers are the lock's holders,
# listed in pg_locks: other transactions, in this database or another, delay nothing.
_WRITERS_KEY = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND CAST(l.classid AS int4) = hashtext('newswatch-article-writers')"
    " AND CAST(l.objid AS int4) = hashtext(coalesce(current_schema(), ''))"
)
_JOIN_WRITERS = text(
    "SELECT pg_advisory_xact_lock_shared("
    "hashtext('newswatch-article-writers'), hashtext(coalesce(current_schema(), '')))"
)
_LAST_ARTICLE_ID = text(
    "SELECT coalesce(pg_sequence_last_value("
    "CAST(pg_get_serial_sequence('articles', 'id') AS regclass)), 0)"
)
_WRITERS = text(
    f"SELECT l.virtualtransaction FROM pg_locks l WHERE {_WRITERS_KEY}"
    " AND l.pid <> pg_backend_pid()"
)
_STILL_WRITING = text(
    f"SELECT count(*) FROM pg_locks l WHERE {_WRITERS_KEY} AND l.virtualtransaction = ANY(:writers)"
)


@dataclass(frozen=True)
class Horizon:
    """The highest article id handed out when it was read, and the transactions writing
    articles then: every id up to `top` is visible or never will be once they have ended."""

    top: int
    writers: tuple[str, ...]


def join_article_writers(session: Session) -> None:
    """Count the caller's transaction among the article writers until it ends; call it
    before the transaction takes article ids (read_horizon relies on that order)."""
    session.execute(_JOIN_WRITERS)


def read_horizon(session: Session) -> Horizon:
    """Read in two statements, the id first: a writer that took an id up to `top` held the
    writers' lock before, so the second statement lists it unless it has ended."""
    top = int(session.execute(_LAST_ARTICLE_ID).scalar_one())
    writers = tuple(sorted(session.execute(_WRITERS).scalars()))
    return Horizon(top, writers)


def horizon_settled(session: Session, horizon: Horizon) -> bool:
    """Whether every transaction writing articles when `horizon` was read has ended."""
    if not horizon.writers:
        return True
    still = session.execute(_STILL_WRITING, {"writers": list(horizon.writers)}).scalar_one()
    return int(still) == 0


def articles_by_id(
    session: Session, ids: Sequence[int]
) -> dict[int, tuple[StoredArticle, Row[Any]]]:
    """Articles as the grouping took them, with their stored decision (group_stage,
    group_score, duplicate_of): what a standby replays and checks."""
    out: dict[int, tuple[StoredArticle, Row[Any]]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        query = (
            select(*_ARTICLE_COLUMNS, A.group_stage, A.group_score, A.duplicate_of)
            .select_from(ARTICLES.outerjoin(SOURCES, SOURCES.c.id == A.source_id))
            .where(A.id.in_(chunk))
        )
        for row in session.execute(query):
            out[row.id] = (_stored(row), row)
    return out


def place_ungrouped(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write the event columns of articles nobody grouped yet (rows of id and the columns
    of EventGrouper.article_columns); Overlap, and nothing of it kept, if any was grouped."""
    if not rows:
        return
    columns = ("event_id", "duplicate_of", "group_stage", "group_score", "group_explain")
    statement = (
        update(ARTICLES)
        .where(and_(A.id == bindparam("b_id"), A.event_id.is_(None), A.group_stage.is_(None)))
        .values({name: bindparam(f"b_{name}") for name in (*columns, "fingerprint")})
    )
    bound = [{f"b_{key}": value for key, value in row.items()} for row in rows]
    result = session.connection().execute(statement, bound)
    if result.rowcount != len(rows):
        raise Overlap(f"{len(rows) - result.rowcount} of {len(rows)} articles grouped already")


# --- sightings of known articles, for the grouper to count ---
def queue_late_sightings(session: Session, pairs: list[tuple[int, int]]) -> None:
    """(article, source) pairs a fetch worker stored as new sightings of articles stored
    before: the grouper counts them into their events (take_late_sightings)."""
    if pairs:
        session.execute(
            insert(LATE_SIGHTINGS), [{"article_id": a, "source_id": s} for a, s in pairs]
        )


def take_late_sightings(session: Session, limit: int) -> list[tuple[int, int]]:
    """The oldest `limit` queued sightings, deleted in the caller's transaction (a batch
    rolled back leaves them queued): (article, source) pairs in the order stored."""
    oldest = select(LATE_SIGHTINGS.c.id).order_by(LATE_SIGHTINGS.c.id).limit(limit)
    statement = (
        LATE_SIGHTINGS.delete()
        .where(LATE_SIGHTINGS.c.id.in_(oldest.scalar_subquery()))
        .returning(LATE_SIGHTINGS.c.id, LATE_SIGHTINGS.c.article_id, LATE_SIGHTINGS.c.source_id)
    )
    rows = sorted(session.execute(statement))
    return [(row.article_id, row.source_id) for row in rows]


def sighting_of(article_id: int, source_id: int) -> StoredArticle:
    """A queued sighting as the grouping stage takes one: a known article seen at one more
    source (its text is not needed: the article is grouped already)."""
    return StoredArticle(
        id=article_id,
        source_id=source_id,
        source_name=None,
        url=None,
        title=None,
        summary=None,
        text=None,
        published=None,
        first_seen=utcnow(),
        language=None,
        is_new=False,
        new_sighting=True,
    )


# --- the batch log -----------------------------------------------------------------------
def log_batch(session: Session, epoch: int, article_ids: list[int]) -> int:
    return int(
        session.execute(
            insert(BATCHES)
            .values(epoch=epoch, article_ids=article_ids, created_at=utcnow())
            .returning(B.seq)
        ).scalar_one()
    )


@dataclass(frozen=True)
class Origin:
    """The window a leader restored: its start, each article's event then (id pairs), the
    events kept apart, and the last logged batch it held."""

    since: datetime | None
    placed: list[tuple[int, int]]
    apart: list[tuple[int, int]]
    after_seq: int


def log_origin(session: Session, epoch: int, origin: Origin) -> int:
    """Log the origin of a new leader's state; its seq names it (the lease's origin_seq)."""
    document = {
        "since": origin.since.isoformat() if origin.since else None,
        "placed": [list(p) for p in origin.placed],
        "apart": [list(p) for p in origin.apart],
        "after_seq": origin.after_seq,
    }
    return int(
        session.execute(
            insert(BATCHES)
            .values(epoch=epoch, article_ids=[], origin=document, created_at=utcnow())
            .returning(B.seq)
        ).scalar_one()
    )


def read_origin(session: Session, seq: int) -> Origin | None:
    document = session.execute(select(B.origin).where(B.seq == seq)).scalar()
    if not document:
        return None
    since = document["since"]
    return Origin(
        since=datetime.fromisoformat(since) if since else None,
        placed=[(int(a), int(e)) for a, e in document["placed"]],
        apart=[(int(a), int(b)) for a, b in document["apart"]],
        after_seq=int(document["after_seq"]),
    )


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A read-only session on one snapshot of the store (REPEATABLE READ): a restore and
    the log position it stands at must see the same committed batches."""
    with Session(engine) as session:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        try:
            yield session
        finally:
            session.rollback()


def origin_logged_at(session: Session, seq: int) -> datetime | None:
    """When the origin row `seq` was logged (None: no such row)."""
    return session.execute(
        select(func.min(B.created_at, type_=UTCDateTime)).where(B.seq == seq)
    ).scalar()


def prune_log(session: Session, origin_seq: int) -> int:
    """Delete the logged batches and origins before `origin_seq`, the lease's origin: a
    state is built from the lease's origin and the batches after it only, so nothing reads
    them again (a standby building from an older origin reads them in its own snapshot,
    which still holds them). How many rows went."""
    result = session.execute(BATCHES.delete().where(B.seq < origin_seq))
    return int(result.rowcount)  # type: ignore[attr-defined]


def last_seq(session: Session) -> int:
    return int(session.execute(select(func.coalesce(func.max(B.seq), 0))).scalar_one())


def batches_after(session: Session, seq: int, limit: int = 200) -> list[tuple[int, list[int]]]:
    """(seq, article ids) of the logged batches after `seq`, in order."""
    query = (
        select(B.seq, B.article_ids)
        .where(B.seq > seq, B.origin.is_(None))
        .order_by(B.seq)
        .limit(limit)
    )
    return [(int(row.seq), list(row.article_ids)) for row in session.execute(query)]


def iter_batches_after(session: Session, seq: int) -> Iterator[tuple[int, list[int]]]:
    while batch := batches_after(session, seq):
        yield from batch
        seq = batch[-1][0]


# --- what /metrics shows -----------------------------------------------------------------
def grouping_backlog(session: Session) -> tuple[int, datetime | None]:
    """How many articles wait for the grouper, and when the oldest of them was stored."""
    count, oldest = session.execute(
        select(func.count(A.id), func.min(A.first_seen, type_=UTCDateTime)).where(
            A.event_id.is_(None), A.group_stage.is_(None)
        )
    ).one()
    return int(count), oldest
