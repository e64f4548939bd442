"""`lang:` rules on articles whose language was detected, not declared (issue 14, item 4)."""

from __future__ import annotations

from sqlalchemy import select

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.alert_models import Notification
from newswatch.store.articles import ensure_source
from newswatch.store.db import session_scope
from newswatch.store.models import Article

# Real headlines (heise online and the UCI news stream); neither feed declares a language.
GERMAN = ParsedEntry(
    url="https://heise.example/wildfly",
    title="Java-Anwendungsserver: Red Hat gibt WildFly 10 frei",
    summary="Die neue Version des Java-EE-Servers setzt Java 8 voraus und bringt unter "
    "anderem Unterstützung für JavaScript auf dem Server.",
)
ENGLISH = ParsedEntry(
    url="https://latimes.example/fed",
    title="Fed official says weak data caused by weather, should not slow taper",
)
DECLARED = ParsedEntry(
    url="https://news.example/declared",
    title="Bundesregierung beschließt neues Gesetz zur Rente",
    language="en-US",  # what the feed says wins, even over German words
)


def _notified(engine, query: str) -> set[str]:  # type: ignore[no-untyped-def]
    """The URLs of the articles whose events a rule with `query` notified about."""
    config = FileConfig(
        channels=[ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/x")],
        rules=[RuleConfig(name="r", query=query, channels=["ops"])],
    )
    pipeline = Pipeline(engine, config, Settings(_env_file=None))  # type: ignore[call-arg]
    with session_scope(engine) as session:
        source_id = ensure_source(session, "mixed").id
    pipeline.ingest(source_id, [GERMAN, ENGLISH, DECLARED])  # type: ignore[arg-type]
    with session_scope(engine) as session:
        events = set(session.execute(select(Notification.event_id)).scalars())
        urls = select(Article.url).where(Article.event_id.in_(events))  # type: ignore[union-attr]
        return set(session.execute(urls).scalars())


def test_lang_rule_matches_a_detected_article(engine) -> None:  # type: ignore[no-untyped-def]
    assert _notified(engine, "lang:de") == {GERMAN.url}


def test_lang_rule_matches_detected_and_normalised_declared(engine) -> None:  # type: ignore[no-untyped-def]
    assert _notified(engine, "lang:en") == {ENGLISH.url, DECLARED.url}
