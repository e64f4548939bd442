"""The alerts stage: match articles against every rule, and notify once per (rule, event)
when an event is corroborated by enough distinct sources.

Runs inside the ingest transaction (Pipeline.ingest_jobs): the matches, the state and the
outbox rows commit together with the articles and events that caused them, or not at all.
Merges and splits have been applied to the matches and states already (the grouping stage
applies them to every table: store.events.apply_regroupings); this stage folds the outbox
rows of merged events and judges the regrouped events again.

A round of decisions reads what it needs in a few statements (the states, matches, events,
articles and source names of every (rule, event) in play) and writes the states and the
outbox rows in one statement each: its cost does not grow with a query per match.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row
from sqlmodel import Session

from newswatch.alerts.articles import (
    ArticleView,
    counted_sources,
    counts_every_carrier,
    document,
    load_articles,
)
from newswatch.alerts.cap import RuleCap
from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.judging import Firing, Match, corroboration, due_update, judge
from newswatch.alerts.matcher import CompiledRule, RuleSet
from newswatch.alerts.payload import (
    EventFields,
    article_entry,
    event_fields,
    event_payload,
    listed,
)
from newswatch.alerts.policy import group_wait, schedule
from newswatch.grouping.changes import EventChange
from newswatch.prometheus_registry import RULE_MATCHES
from newswatch.store import alerts as store
from newswatch.store.alerts import AlertStateRecord, Pair, StoredMatches
from newswatch.store.columns import utcnow
from newswatch.store.event_triage import muted_events
from newswatch.store.outbox import enqueue_many, idempotency_key, open_wait_group

if TYPE_CHECKING:
    from newswatch.config import Settings

WaitGroup = tuple[datetime, str]  # (send time, batch key) of a group_wait group


@dataclass
class Shown:
    """What the payloads of a set of (rule, event) show, loaded at once."""

    events: dict[int, Row[Any]]
    articles: dict[int, dict[str, Any]]  # the listed articles' entries (payload.article_entry)
    names: dict[int, str]  # source names by id
    # Each event's part of its payloads, built at its first payload of the round.
    fields: dict[int, EventFields] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        session: Session,
        judged: Iterable[tuple[int, list[int], Sequence[Match]]],
        views: Mapping[int, ArticleView] | None = None,
    ) -> Shown:
        """`judged`: (event id, matching article ids, matches) of each (rule, event);
        `views`: articles read already this round (the others are read)."""
        events: set[int] = set()
        articles: set[int] = set()
        sources: set[int] = set()
        for event_id, matched, matches in judged:
            events.add(event_id)
            articles.update(listed(matched))
            sources.update(s for m in matches for s in m.sources)
        views = views or {}
        unread = sorted(i for i in articles if i not in views)
        shown = [views[i] for i in articles if i in views]
        shown += load_articles(session, unread, with_text=False)
        return cls(
            store.events_by_id(session, events),
            {v.id: article_entry(v) for v in shown},
            store.source_names(session, sources),
        )

    def payload(
        self,
        rule: RuleConfig,
        firing: Firing,
        revision: int,
        matched: list[int],
        matches: Sequence[Match],
        public_url: str | None,
    ) -> dict[str, Any]:
        names = {self.names[s] for m in matches for s in m.sources if s in self.names}
        event_id = firing.event_id
        if (fields := self.fields.get(event_id)) is None:  # once an event: ~19 rules each
            fields = self.fields[event_id] = event_fields(
                self.events.get(event_id), event_id, public_url
            )
        articles, sources = self.articles, list(names)
        return event_payload(
            rule, firing, revision, matched, event=fields, articles=articles, sources=sources
        )


@dataclass
class Round:
    """One decision round's state: what was read for it and what it will write."""

    now: datetime
    states: dict[Pair, AlertStateRecord]
    shown: Shown
    silenced: set[str | None]
    muted: set[int]  # events people muted (a per-event silence, store/event_triage.py)
    changed: dict[Pair, AlertStateRecord] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # The rule's group_wait group to a channel still collecting (None: none open).
    wait_groups: dict[tuple[str, str], WaitGroup | None] = field(default_factory=dict)


class AlertStage:
    """Decides, inside the ingest transaction, which (rule, event) pairs are notified and
    when; writes matches, state and outbox rows. `settings` is accepted for the shared
    interface (its public URL makes the payloads' event links); `clock` is for tests."""

    def __init__(
        self,
        rules: list[RuleConfig],
        channels: list[ChannelConfig],
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.public_url = settings.public_url if settings is not None else None
        self.rules = {r.name: r for r in rules if r.enabled}
        self.channels = {c.name: c for c in channels}
        self.ruleset = RuleSet(CompiledRule(r.name, r.compiled()) for r in self.rules.values())
        # Rules whose sources / exclude_sources lists leave some carriers out.
        self._filtered = {r.name for r in self.rules.values() if not counts_every_carrier(r)}
        self.clock = clock
        self.cap = RuleCap.from_settings(settings)
        # Called after a transaction that queued notifications commits (wakes the worker).
        self.enqueued = False

    # --- the pipeline's entry point -------------------------------------------------
    def on_changes(self, session: Session, changes: list[EventChange]) -> list[Firing]:
        if not self.rules or not changes:
            return []
        waiting: set[Pair] = set()  # (rule, event) whose queued news is re-told
        for change in changes:  # merges in the order they happened
            for gone in change.merged_event_ids:
                waiting |= self._fold_outbox(session, gone, change.event_id)
        # The round's new articles are matched; their matches are judged from memory and
        # stored at the end of the round (what is read back is what was stored before).
        new_ids = [c.article_id for c in changes if not c.sighting]
        views = {view.id: view for view in load_articles(session, new_ids)}
        fresh: dict[Pair, list[Match]] = defaultdict(list)
        rows = [(view.id, self._match(view, fresh)) for view in views.values()]
        rows = [(article_id, matched) for article_id, matched in rows if matched]
        # Known articles seen at one more source: their rules are judged again (the new
        # carrier is read from the sightings with the others).
        touched = set(fresh)
        sighted = [c.article_id for c in changes if c.sighting]
        for stored in store.matches_of_articles(session, sighted):
            touched |= {(r, stored.event_id) for r in stored.rules if r in self.rules}
        # Events that grew by a merge are judged again with their new members; both parts
        # of a split too (the part split off is a new event to its rules).
        regrouped = {c.event_id for c in changes if c.merged_event_ids}
        for c in changes:
            if c.split is not None:
                regrouped |= {c.split.event_id, c.split.new_event_id}
        # Events this round opened (and no merge or split touched) have nothing stored.
        opened = {c.event_id for c in changes if c.opened and c.event_id == c.article_id}
        gather = _Gather(self.rules, fresh, opened - regrouped)
        for event_id, found in gather.read(session, regrouped).items():
            touched |= {(r, event_id) for stored in found for r in stored.rules if r in self.rules}
        self._retell(session, waiting, gather)
        fired = self._decide(session, touched, gather, views)
        store.insert_matches(session, rows)
        return fired

    def _match(self, view: ArticleView, fresh: dict[Pair, list[Match]]) -> store.Matched:
        """Every rule the article's text matches, with the words found ({rule: words}, as
        stored: which carriers count is decided when a match is judged, so a later carrier
        that counts, or a source added to the rule's list, still fires); those a carrier
        counts for now are added to `fresh` under their (rule, event)."""
        out: store.Matched = {}
        # Most rules have no source lists: every carrier counts, one tuple for all of them.
        every = tuple(source_id for source_id, _ in view.sources)
        article_id, event_id, at = view.id, view.event_id, view.at
        filtered, rules = self._filtered, self.rules
        for compiled, found in self.ruleset.explain(document(view)):
            name = compiled.name
            out[name] = found
            counted = counted_sources(rules[name], view.sources) if name in filtered else every
            if counted:
                fresh[(name, event_id)].append(Match(article_id, at, counted, found))
        return out

    # --- merges: fragments of one story -----------------------------------------------
    def _fold_outbox(self, session: Session, gone: int, keep: int) -> set[Pair]:
        """Event `gone` was absorbed into `keep`: their queued notifications (never
        attempted: waiting out a group_wait, a digest or quiet hours, or not yet picked up)
        become one per (rule, channel) about the survivor. If a notification of either went
        out already, the story was announced: no second "new" alert waits, only the
        survivor's updates. Returns the (rule, keep) pairs whose waiting rows need the
        survivor's news (see _retell)."""
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in store.notifications_of(session, (gone, keep)):
            if row.rule in self.rules:
                groups[(row.rule, row.channel)].append(row)
        retell: set[Pair] = set()
        for (rule, _channel), rows in groups.items():
            waiting = [r for r in rows if r.status == "pending" and r.attempts == 0]
            announced = len(waiting) < len(rows)
            if announced:  # only the survivor's updates wait
                kept = [r for r in waiting if r.event_id == keep and r.revision > 1]
            elif waiting:  # one notification: the first due (the survivor's own on a tie)
                kept = [min(waiting, key=lambda r: (r.not_before, r.event_id != keep, r.revision))]
            else:
                continue
            store.drop_notifications(session, [r.id for r in waiting if r not in kept])
            if not announced:  # (after the drop: the survivor's key may be free only now)
                self._adopt(session, rule, keep, kept[0])
            if kept:
                retell.add((rule, keep))
        return retell

    @staticmethod
    def _adopt(session: Session, rule: str, keep: int, row: Any) -> None:
        """The survivor's one waiting notification is `row` (maybe the absorbed event's,
        moved over): the survivor's state counts it as its latest."""
        if row.event_id != keep:
            key = idempotency_key(rule, keep, row.revision)
            store.rewrite_notification(session, row.id, keep, key)  # _retell rewrites the news
        state = store.alert_states(session, [(rule, keep)]).get((rule, keep))
        if state is not None:
            state.revision, state.status = row.revision, "notified"
            store.save_alert_states(session, [state])

    def _retell(self, session: Session, pairs: set[Pair], gather: _Gather) -> None:
        """The waiting notifications of merged events say what the survivor holds now:
        its title, sources and articles (so the one notification covers every fragment)."""
        if not pairs:
            return
        found = gather.matches(session, pairs)
        judged = {
            pair: result
            for pair in sorted(pairs)
            if (result := judge(self.rules[pair[0]], pair[1], found[pair])) is not None
        }
        shown = Shown.load(session, ((e, j[1], found[(r, e)]) for (r, e), j in judged.items()))
        states = store.alert_states(session, judged)
        outbox = store.notifications_of(session, {e for _, e in judged})
        for (rule_name, event_id), (firing, matched) in judged.items():
            rule = self.rules[rule_name]
            for row in outbox:
                if (row.rule, row.event_id) != (rule_name, event_id):
                    continue
                if row.status != "pending" or row.attempts:
                    continue
                matches = found[(rule_name, event_id)]
                payload = shown.payload(
                    rule, firing, row.revision, matched, matches, self.public_url
                )
                key = idempotency_key(rule_name, event_id, row.revision)
                store.rewrite_notification(session, row.id, event_id, key, payload)
            if (state := states.get((rule_name, event_id))) is not None:
                state.sources_notified = firing.sources
        store.save_alert_states(session, states.values())

    # --- deciding -------------------------------------------------------------------
    def _decide(
        self,
        session: Session,
        touched: set[Pair],
        gather: _Gather,
        views: Mapping[int, ArticleView],
    ) -> list[Firing]:
        """Judge every (rule, event) that got new matches, with a few statements in all
        (`gather` holds the round's matches and reads the stored ones); `views` are the
        round's articles."""
        if not touched:
            return []
        # A pair of an event new this round has no state and no earlier matches: with fewer
        # matches than the rule's min_sources it cannot fire (judge would say so), and
        # nothing else is to be done for it.
        rules, fresh, new_events = self.rules, gather.fresh, gather.new_events
        known = [pair for pair in touched if pair[1] not in new_events]
        touched = set(known)
        for pair, matches in fresh.items():
            if pair[1] in new_events and _carriers(matches) >= rules[pair[0]].min_sources:
                touched.add(pair)
        states = store.alert_states(session, known) if known else {}
        # Notified already, without updates: nothing more can happen for these.
        open_pairs = [
            pair
            for pair in sorted(touched)
            if (state := states.get(pair)) is None or state.revision == 0 or rules[pair[0]].updates
        ]
        if not open_pairs:
            return []
        found = gather.matches(session, open_pairs)
        due = []
        for pair in open_pairs:
            rule = rules[pair[0]]
            judged = judge(rule, pair[1], found[pair])
            state = states.get(pair)
            if judged is not None and (state is None or due_update(rule, state, judged[0].sources)):
                due.append((rule, *judged, found[pair]))
        if not due:
            return []
        now = self.clock()
        shown = Shown.load(session, ((f.event_id, m, found) for _r, f, m, found in due), views)
        silenced = store.silenced_rules(session, now)
        self.cap.new_round(session, {rule.name for rule, *_ in due}, now)
        muted = muted_events(session, {f.event_id for _r, f, _m, _found in due})
        round_ = Round(now, states, shown, silenced, muted)
        fired = [f for rule, f, m, ms in due if self._notify(session, round_, rule, f, m, ms)]
        for rule_name, count in Counter(f.rule for f in fired).items():
            RULE_MATCHES.labels(rule_name).inc(count)
        store.save_alert_states(session, round_.changed.values())
        if enqueue_many(session, round_.outbox):
            self.enqueued = True
        if self.cap.write_summaries(session, self.channels, now):
            self.enqueued = True
        return fired

    def _notify(
        self,
        session: Session,
        round_: Round,
        rule: RuleConfig,
        firing: Firing,
        matched: list[int],
        matches: Sequence[Match],
    ) -> bool:
        now, pair = round_.now, (rule.name, firing.event_id)
        state = round_.states.get(pair)
        if state is not None and not due_update(rule, state, firing.sources):
            return False
        last_sent = state.last_at if state is not None and state.revision else None
        if state is None:
            state = AlertStateRecord(rule.name, firing.event_id, first_at=now)
            round_.states[pair] = state
        round_.changed[pair] = state
        state.sources_notified = firing.sources
        state.last_at = now
        # A rule's silence, or the event's mute (a per-event silence set by people).
        silenced = None in round_.silenced or rule.name in round_.silenced
        if silenced or firing.event_id in round_.muted:
            state.status = "silenced"  # recorded, so the silence is visible; nothing queued
            return False
        if self.cap.full(rule.name, now):
            state.status = "capped"  # counted in the window's summary (alerts/cap.py)
            event = round_.shown.events.get(firing.event_id)
            self.cap.overflow(rule, firing.event_id, event, firing.sources, now)
            return False
        self.cap.counted(rule.name, now)
        state.status = "notified"
        state.revision += 1
        payload = round_.shown.payload(
            rule, firing, state.revision, matched, matches, self.public_url
        )
        for channel_name in rule.channels:
            channel = self.channels[channel_name]
            group = None
            if group_wait(rule, channel):
                group = self._wait_group(session, round_, rule.name, channel_name)
            not_before, batch_key = schedule(rule, channel, now, last_sent, group)
            if batch_key is not None and batch_key.startswith(f"{rule.name}:wait:"):
                _join(round_, (rule.name, channel_name), (not_before, batch_key))
            round_.outbox.append(
                {
                    "rule": rule.name,
                    "channel": channel_name,
                    "event_id": firing.event_id,
                    "revision": state.revision,
                    "payload": payload,
                    "not_before": not_before,
                    "batch_key": batch_key,
                }
            )
        return True

    @staticmethod
    def _wait_group(session: Session, round_: Round, rule: str, channel: str) -> WaitGroup | None:
        """The group_wait group of (rule, channel) still collecting: read once a round, then
        the ones this round opened or joined (their rows are written at its end)."""
        key = (rule, channel)
        if key not in round_.wait_groups:
            round_.wait_groups[key] = open_wait_group(session, rule, channel, round_.now)
        return round_.wait_groups[key]

    # --- dry run --------------------------------------------------------------------
    def dry_run(self, session: Session, since: datetime | None) -> list[Firing]:
        """The events that would fire on the stored history, without writing anything.
        `since` applies to the time the news counts at (store/timing.py), like windows."""
        ids = store.grouped_article_ids(session, since)
        points: dict[Pair, list[tuple[int, datetime]]] = defaultdict(list)
        terms: dict[Pair, set[str]] = defaultdict(set)
        for start in range(0, len(ids), 500):
            for view in load_articles(session, ids[start : start + 500]):
                for compiled, words in self.ruleset.explain(document(view)):
                    rule = self.rules[compiled.name]
                    key = (rule.name, view.event_id)
                    counted = counted_sources(rule, view.sources)
                    points[key] += [(source_id, view.at) for source_id in counted]
                    if counted:
                        terms[key].update(words)
        out = []
        for (rule_name, event_id), found in sorted(points.items()):
            rule = self.rules[rule_name]
            count = corroboration(found, rule.window)
            if count >= rule.min_sources:
                out.append(Firing(rule_name, event_id, count, sorted(terms[(rule_name, event_id)])))
        return out


def _carriers(matches: Sequence[Match]) -> int:
    """The carriers of `matches` in all (some may be the same source)."""
    return sum(len(m.sources) for m in matches)


def _join(round_: Round, key: tuple[str, str], group: WaitGroup) -> None:
    """A notification of this round went into wait group `group`: the latest such group is
    the one later notifications join (as outbox.open_wait_group would find it)."""
    if group[0] <= round_.now:
        return
    current = round_.wait_groups.get(key)
    if current is None or group[0] >= current[0]:
        round_.wait_groups[key] = group


class _Gather:
    """The matches of a round's (rule, event) pairs: the round's own, held in memory, and
    those stored before the round, read once an event (an event the round opened has none)."""

    def __init__(
        self,
        rules: Mapping[str, RuleConfig],
        fresh: dict[Pair, list[Match]],
        new_events: set[int],
    ):
        self.rules = rules
        self.fresh = fresh
        self.new_events = new_events
        self.stored: dict[int, list[StoredMatches]] = {}

    def read(self, session: Session, events: Iterable[int]) -> dict[int, list[StoredMatches]]:
        """The stored matches of the events' articles (read once an event)."""
        events = set(events)
        unread = {e for e in events if e not in self.stored and e not in self.new_events}
        if unread:
            found = store.matches_of_events(session, unread)
            self.stored.update((e, found.get(e, [])) for e in unread)
        return {e: self.stored.get(e, []) for e in events}

    def matches(self, session: Session, pairs: Iterable[Pair]) -> dict[Pair, list[Match]]:
        """Every matching article of each pair, once: stored ones first, then the round's
        (a list of the round's may be returned as it is: not to be changed)."""
        pairs = list(pairs)
        wanted: dict[int, set[str]] = defaultdict(set)
        for rule, event_id in pairs:
            if event_id not in self.new_events:
                wanted[event_id].add(rule)
        self.read(session, wanted)
        out: dict[Pair, list[Match]] = {}
        for event_id, names in wanted.items():
            for stored in self.stored[event_id]:
                for name in names & stored.rules.keys():
                    counted = counted_sources(self.rules[name], stored.sources)
                    if counted:
                        match = Match(stored.article_id, stored.at, counted, stored.rules[name])
                        out.setdefault((name, event_id), []).append(match)
        for pair in pairs:
            if (found := out.get(pair)) is None:
                out[pair] = self.fresh.get(pair, [])
            else:
                found += self.fresh.get(pair, ())
        return out
