"""What the alerts stage reads and writes: the rules each article matched, per-(rule, event)
alert state, silences, the articles and events a notification shows, and the outbox rows a
merge folds.

Neutral types: ArticleRow (an article as the alerts stage reads it), StoredMatches (an
article's stored matches, as judging reads them), AlertStateRecord (a row of alert_state,
held in memory for one decision round).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlmodel import Session, col

from newswatch.store.alert_models import AlertState, ArticleMatch, Notification, Silence
from newswatch.store.columns import as_utc
from newswatch.store.executemany import executemany
from newswatch.store.models import Article, Event, Sighting, Source, table_of
from newswatch.store.timing import article_time, article_time_sql
from newswatch.store.upsert import insert_ignoring_conflicts

MATCHES = table_of(ArticleMatch)
STATES = table_of(AlertState)
_INSERT_STATES = insert(STATES)  # one object: its compiled form is cached (store/executemany)
SILENCES = table_of(Silence)
M = MATCHES.c
S = STATES.c
N = table_of(Notification).c
ARTICLES = table_of(Article)
A = ARTICLES.c
SIGHTINGS, SOURCES = table_of(Sighting), table_of(Source)
SG, SO = SIGHTINGS.c, SOURCES.c
EV = table_of(Event).c
# Ids in one IN (...) list.
CHUNK = 500

Pair = tuple[str, int]  # (rule, event)


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


# Rules in one pair lookup statement (see _pairs_in); unused places match nothing.
PAIR_GROUPS = 32


def _pairs_in(rule: Any, event_id: Any) -> ColumnElement[bool]:
    """`(rule, event_id)` is one of the pairs bound by `_pair_params`, written so that both
    stores look the pairs up in their (rule, event_id) index: `rule = ? AND event_id IN
    (...)` for each of PAIR_GROUPS rules, ORed (a row-value `IN (VALUES ...)` makes SQLite
    scan the table). The statement's shape never changes, so SQLAlchemy compiles it once:
    an OR as long as the round's rules was compiled anew each round, which cost more than
    running it."""
    return or_(
        *(
            and_(
                rule == bindparam(f"pair_rule_{i}"),
                event_id.in_(bindparam(f"pair_events_{i}", expanding=True)),
            )
            for i in range(PAIR_GROUPS)
        )
    )


def _pair_params(pairs: Iterable[Pair]) -> Iterable[dict[str, Any]]:
    """The parameters of `_pairs_in` for `pairs`, a statement's worth at a time (at most
    PAIR_GROUPS rules and about CHUNK events each)."""
    by_rule: dict[str, list[int]] = defaultdict(list)
    for name, event in sorted(set(pairs)):
        by_rule[name].append(event)
    groups: list[tuple[str | None, Sequence[int]]] = [
        (name, chunk) for name, events in by_rule.items() for chunk in _chunks(events)
    ]
    for start in range(0, len(groups), PAIR_GROUPS):
        params: dict[str, Any] = {}
        for i in range(PAIR_GROUPS):
            rule, ids = groups[start + i] if start + i < len(groups) else (None, [])
            params[f"pair_rule_{i}"], params[f"pair_events_{i}"] = rule, list(ids)
        yield params


# --- articles and events, as notifications show them -------------------------------------
@dataclass
class ArticleRow:
    id: int
    event_id: int
    title: str | None
    text: str | None  # the text, else the summary
    language: str | None
    at: datetime  # store/timing.py article_time
    sources: list[tuple[int, str]]  # (source id, name) of every carrier, first seen first
    url: str | None = None


def grouped_articles(
    session: Session, ids: Sequence[int], *, with_text: bool = True
) -> list[ArticleRow]:
    """The grouped articles among `ids`, with every source that carried them, in id order
    (without their text, None, unless `with_text`)."""
    if not ids:
        return []
    rows: list[Row[Any]] = []
    carriers: dict[int, list[tuple[int, str]]] = defaultdict(list)
    body = (A.text, A.summary) if with_text else (null().label("text"), null().label("summary"))
    columns = (A.id, A.event_id, A.title, *body, A.language, A.published, A.first_seen, A.url)
    for chunk in _chunks(sorted(set(ids))):
        rows += session.execute(
            select(*columns, A.canonical_url).where(A.id.in_(chunk), A.event_id.is_not(None))
        ).all()
        for article_id, source_id, name in session.execute(
            select(col(Sighting.article_id), col(Sighting.source_id), col(Source.name))
            .join(Source, col(Source.id) == Sighting.source_id)
            .where(col(Sighting.article_id).in_(chunk))
            .order_by(col(Sighting.id))
        ):
            carriers[article_id].append((source_id, name))
    rows.sort(key=lambda r: r.id)
    return [
        ArticleRow(
            r.id,
            r.event_id,
            r.title,
            r.text or r.summary,
            r.language,
            article_time(as_utc(r.published) if r.published else None, as_utc(r.first_seen)),
            carriers.get(r.id, []),
            r.url or r.canonical_url,
        )
        for r in rows
    ]


def grouped_article_ids(session: Session, since: datetime | None) -> list[int]:
    """Ids of grouped articles that count at or after `since` (all when None), in order."""
    query = select(A.id).where(A.event_id.is_not(None))
    if since is not None:
        query = query.where(article_time_sql(A.published, A.first_seen) >= since)
    return list(session.execute(query.order_by(A.id)).scalars())


def events_by_id(session: Session, ids: Iterable[int]) -> dict[int, Row[Any]]:
    """Events by id: id, title, first_seen, last_seen, article_count, source_count."""
    out: dict[int, Row[Any]] = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(
            EV.id, EV.title, EV.first_seen, EV.last_seen, EV.article_count, EV.source_count
        ).where(EV.id.in_(chunk))
        out.update((row.id, row) for row in session.execute(query))
    return out


def source_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(col(Source.id), col(Source.name)).where(col(Source.id).in_(chunk))
        out.update((row[0], row[1]) for row in session.execute(query))
    return out


# --- rule matches: one row an article (decision 0225) -----------------------------------
Matched = dict[str, list[str]]  # rule name -> the words of its query found in the article


def insert_matches(session: Session, rows: Sequence[tuple[int, Matched]]) -> None:
    """Store the rules each article matched, (article id, {rule: words}) a row; an article
    recorded already keeps its row."""
    if rows:
        statement = insert_ignoring_conflicts(session, MATCHES, [M.article_id])
        executemany(session, statement, ("article_id", "rules"), rows)


@dataclass
class StoredMatches:
    """An article's stored matches, with what judging them reads: its event, its time and
    every source that carried it."""

    article_id: int
    event_id: int
    at: datetime  # store/timing.py article_time
    rules: Matched
    sources: list[tuple[int, str]] = field(default_factory=list)  # (id, name), first seen first


def matches_of_events(session: Session, event_ids: Iterable[int]) -> dict[int, list[StoredMatches]]:
    """The stored matches of the events' articles, by event, in article id order: two
    statements for every CHUNK events (the rows, their articles' carriers)."""
    out: dict[int, list[StoredMatches]] = defaultdict(list)
    for chunk in _chunks(sorted(set(event_ids))):
        found = _stored_matches(session, _MATCHES_OF_EVENTS, _CARRIERS_OF_EVENTS, chunk)
        for stored in found:
            out[stored.event_id].append(stored)
    return out


def matches_of_articles(session: Session, article_ids: Iterable[int]) -> list[StoredMatches]:
    """The stored matches of the grouped articles among `article_ids`, in id order."""
    out: list[StoredMatches] = []
    for chunk in _chunks(sorted(set(article_ids))):
        out += _stored_matches(session, _MATCHES_OF_ARTICLES, _CARRIERS_OF_ARTICLES, chunk)
    return out


def _stored_matches(
    session: Session, rows: Any, carriers: Any, ids: Sequence[int]
) -> list[StoredMatches]:
    found = {
        r.article_id: StoredMatches(
            r.article_id,
            r.event_id,
            article_time(as_utc(r.published) if r.published else None, as_utc(r.first_seen)),
            r.rules,
        )
        for r in session.execute(rows, {"ids": list(ids)})
    }
    for article_id, source_id, name in session.execute(carriers, {"ids": list(ids)}):
        if (stored := found.get(article_id)) is not None:
            stored.sources.append((source_id, name))
    return sorted(found.values(), key=lambda s: s.article_id)


# The statements of _stored_matches, compiled once: the matched articles of some events, or
# some matched articles; then every source that carried them.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_MATCHED_ARTICLES = MATCHES.join(ARTICLES, A.id == M.article_id)
_MATCHES = (
    select(M.article_id, A.event_id, A.published, A.first_seen, M.rules)
    .select_from(_MATCHED_ARTICLES)
    .where(A.event_id.is_not(None))
)
_MATCHES_OF_EVENTS = _MATCHES.where(A.event_id.in_(_IDS))
_MATCHES_OF_ARTICLES = _MATCHES.where(M.article_id.in_(_IDS))
_CARRIERS = (
    select(SG.article_id, SG.source_id, SO.name)
    .select_from(
        _MATCHED_ARTICLES.join(SIGHTINGS, SG.article_id == M.article_id).join(
            SOURCES, SO.id == SG.source_id
        )
    )
    .order_by(SG.id)
)
_CARRIERS_OF_EVENTS = _CARRIERS.where(A.event_id.in_(_IDS))
_CARRIERS_OF_ARTICLES = _CARRIERS.where(M.article_id.in_(_IDS))


def _matched_rule_names() -> Any:
    """The rule names of the article_matches rows as a table to select from (each row's
    JSON object's keys: json_each, on both stores)."""
    return func.json_each(M.rules).table_valued("key", joins_implicitly=True)


def event_matched(event_id: ColumnElement[int], rule: str) -> ColumnElement[bool]:
    """SQL: whether an article of event `event_id` matched `rule` (the events list's rule
    filter)."""
    article = ARTICLES.alias("matched_article")  # never correlated with an outer articles
    names = _matched_rule_names()
    return (
        select(literal(1))
        .select_from(MATCHES.join(article, article.c.id == M.article_id), names)
        .where(article.c.event_id == event_id, names.c.key == rule)
        .exists()
    )


def matched_rule_names(session: Session) -> list[str]:
    """The names of the rules that matched some article, in order."""
    names = _matched_rule_names()
    query = select(names.c.key).select_from(MATCHES, names).distinct().order_by(names.c.key)
    return [str(name) for name in session.execute(query).scalars()]


# --- alert state --------------------------------------------------------------------------
@dataclass
class AlertStateRecord:
    rule: str
    event_id: int
    revision: int = 0
    sources_notified: int = 0
    status: str = "notified"  # notified | silenced | capped
    first_at: datetime | None = None
    last_at: datetime | None = None
    stored: bool = False  # whether the row exists (else save_alert_states inserts it)

    def values(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "event_id": self.event_id,
            "revision": self.revision,
            "sources_notified": self.sources_notified,
            "status": self.status,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


def alert_states(session: Session, pairs: Iterable[Pair]) -> dict[Pair, AlertStateRecord]:
    """The stored state of each (rule, event) that has one."""
    out: dict[Pair, AlertStateRecord] = {}
    for params in _pair_params(pairs):
        for row in session.execute(_STATES_OF_PAIRS, params):
            out[(row.rule, row.event_id)] = _record(row)
    return out


_STATES_OF_PAIRS = select(STATES).where(_pairs_in(S.rule, S.event_id))


def _record(row: Row[Any]) -> AlertStateRecord:
    return AlertStateRecord(
        row.rule,
        row.event_id,
        row.revision,
        row.sources_notified,
        row.status,
        row.first_at,
        row.last_at,
        stored=True,
    )


def save_alert_states(session: Session, states: Iterable[AlertStateRecord]) -> None:
    """Insert the new states and update the stored ones, a statement for each kind."""
    new: list[AlertStateRecord] = []
    known: list[AlertStateRecord] = []
    for state in states:
        (known if state.stored else new).append(state)
    if new:
        values = [s.values() for s in new]
        executemany(session, _INSERT_STATES, list(values[0]), [tuple(v.values()) for v in values])
        for state in new:
            state.stored = True
    if known:
        statement = (
            update(STATES)
            .where(S.rule == bindparam("b_rule"), S.event_id == bindparam("b_event_id"))
            .values(
                revision=bindparam("b_revision"),
                sources_notified=bindparam("b_sources_notified"),
                status=bindparam("b_status"),
                first_at=bindparam("b_first_at"),
                last_at=bindparam("b_last_at"),
            )
        )
        rows = [{f"b_{k}": v for k, v in s.values().items()} for s in known]
        session.connection().execute(statement, rows)


def merge_alert_states(session: Session, gone: int, keep: int) -> None:
    """The absorbed event's (rule, event) states belong to the survivor. Where both have
    one, the further one wins (more revisions sent: a story notified under either id stays
    notified), keeping the earlier first decision."""
    by_rule: dict[str, dict[int, AlertStateRecord]] = defaultdict(dict)
    for row in session.execute(select(STATES).where(S.event_id.in_((gone, keep)))):
        by_rule[row.rule][row.event_id] = _record(row)
    for rule, pair in by_rule.items():
        old, kept = pair.get(gone), pair.get(keep)
        if old is None:
            continue
        if kept is None:
            session.execute(
                update(STATES).where(S.rule == rule, S.event_id == gone).values(event_id=keep)
            )
            continue
        if old.revision > kept.revision:
            kept.revision, kept.status = old.revision, old.status
            kept.sources_notified, kept.last_at = old.sources_notified, old.last_at
        if old.first_at is not None and (kept.first_at is None or old.first_at < kept.first_at):
            kept.first_at = old.first_at
        save_alert_states(session, [kept])
        session.execute(delete(STATES).where(S.rule == rule, S.event_id == gone))


def notified_counts_since(
    session: Session, rules: Iterable[str], since: datetime
) -> dict[str, int]:
    """Events each rule has notified (a first notification or an update) since `since`: what
    its cap per window counts (alerts/cap.py)."""
    names = sorted(set(rules))
    if not names:
        return {}
    query = (
        select(S.rule, func.count())
        .where(S.rule.in_(names), S.status == "notified", S.revision > 0, S.last_at >= since)
        .group_by(S.rule)
    )
    counts = {rule: int(count) for rule, count in session.execute(query)}
    return {rule: counts.get(rule, 0) for rule in names}


def suppressed_counts(session: Session) -> dict[str, int]:
    """Per rule: events decided while silenced and not notified since."""
    rows = session.execute(
        select(S.rule, func.count()).where(S.status == "silenced").group_by(S.rule)
    )
    return {rule: int(count) for rule, count in rows}


# --- silences -----------------------------------------------------------------------------
def insert_silence(
    session: Session, rule: str | None, until: datetime, reason: str | None
) -> Silence:
    row = Silence(rule=rule, until=until, reason=reason)
    session.add(row)
    session.flush()
    return row


def silences(session: Session, *, expired: bool, now: datetime) -> list[Silence]:
    """Silences in force at `now` (and expired ones too with `expired`), soonest to end
    first."""
    query = select(Silence).order_by(col(Silence.until), col(Silence.id))
    if not expired:
        query = query.where(col(Silence.until) > now)
    return list(session.execute(query).scalars())


def silenced_rules(session: Session, now: datetime) -> set[str | None]:
    """The rules a silence in force covers (None: a silence of every rule)."""
    query = select(SILENCES.c.rule).where(SILENCES.c.until > now).distinct()
    return set(session.execute(query).scalars())


def delete_silence(session: Session, silence_id: int) -> bool:
    """False when there is no silence with that id."""
    row = session.get(Silence, silence_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def silence_covers(session: Session, rule: str, now: datetime) -> bool:
    query = select(SILENCES.c.id).where(
        SILENCES.c.until > now, or_(SILENCES.c.rule.is_(None), SILENCES.c.rule == rule)
    )
    return session.execute(query.limit(1)).first() is not None


# --- the outbox rows a merge folds --------------------------------------------------------
def notifications_of(session: Session, event_ids: Iterable[int]) -> Sequence[Row[Any]]:
    """Every outbox row of the events: id, rule, channel, event_id, revision, status,
    attempts, not_before, in id order."""
    return session.execute(
        select(N.id, N.rule, N.channel, N.event_id, N.revision, N.status, N.attempts, N.not_before)
        .where(N.event_id.in_(list(event_ids)))
        .order_by(N.id)
    ).all()


def drop_notifications(session: Session, ids: Sequence[int]) -> None:
    """Remove outbox rows never attempted whose news another notification carries."""
    if ids:
        session.execute(
            delete(Notification).where(N.id.in_(ids), N.attempts == 0, N.status == "pending")
        )


def rewrite_notification(
    session: Session,
    notification_id: int,
    event_id: int,
    key: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """A waiting outbox row now about `event_id` under idempotency key `key`, saying
    `payload` (its payload unchanged when None). A row a delivery worker claimed meanwhile
    is left as it is being sent."""
    values: dict[str, Any] = {"event_id": event_id, "idempotency_key": key}
    if payload is not None:
        values["payload"] = {**payload, "idempotency_key": key}
    session.execute(
        update(Notification)
        .where(N.id == notification_id, N.attempts == 0, N.status == "pending")
        .values(**values)
    )
