"""Property-based tests of the parsers that read what others wrote: on any input, a result or
a clear error of the parser's own kind, never another exception.

- the feed normaliser (`parse_feed`): a ParsedFeed; its catch-all ("parser failed: ...") is
  a defect that happened to be caught, so it counts as a failure here too;
- the rule-query parser (`alerts.query.parse`): a syntax tree or a QueryError with a column;
- the config loader (`parse_config_text`): a FileConfig or a ConfigError naming the place;
- the replay reader (`replay.parse_line`): a ReplayLine or a LineError naming the line.

Bounded by max_examples so the module runs in seconds. No deadline: a per-example time limit
would be a timed assertion on a shared machine.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any
from xml.sax.saxutils import escape

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newswatch.alerts.query import Node, QueryError, parse
from newswatch.config import ConfigError, FileConfig, parse_config_text
from newswatch.fetch.feeds import ParsedFeed, parse_feed
from newswatch.replay import LineError, ReplayLine, parse_line

bounded = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of any shape, the same for YAML (as data a user may write in the wrong place).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
# Text made mostly of a format's own punctuation reaches further into a parser than noise.
dates = st.sampled_from(
    [
        "2026-11-22T08:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "Sun, 22 Nov 2026 08:00:00 GMT",
        "Mon, 31 Feb 0000 99:99:99 +9999",
        "",
        "yesterday",
    ]
)
urls = st.sampled_from(
    [
        "https://a.example/x",
        "/relative",
        "http://[::1",
        "javascript:alert(1)",
        "//x",
        "",
        "http://a.example/\u2028",
        "https://bad host/",
    ]
) | st.text(max_size=20)


# --- the feed normaliser ---------------------------------------------------------------------
def check_feed(feed: ParsedFeed) -> None:
    assert isinstance(feed, ParsedFeed)
    assert not (feed.error or "").startswith("parser failed"), feed.error
    for entry in feed.entries:
        assert entry.title or entry.url or entry.summary or entry.text


@st.composite
def rss(draw: st.DrawFn) -> bytes:
    def field(name: str, values: st.SearchStrategy[str]) -> str:
        value = draw(values)
        return f"<{name}>{escape(value) if draw(st.booleans()) else value}</{name}>"

    items = "".join(
        "<item>"
        + field("title", st.text(max_size=40))
        + field("link", urls)
        + field("pubDate", dates)
        + field("description", st.text(max_size=60) | st.just("<p>a<br>b</p>&amp;"))
        + field("guid", st.text(max_size=10))
        + "</item>"
        for _ in range(draw(st.integers(0, 3)))
    )
    encoding = draw(st.sampled_from(["utf-8", "iso-8859-1", "utf-16", "nonsense"]))
    head = f'<?xml version="1.0" encoding="{encoding}"?>'
    text = f'{head}<rss version="2.0"><channel>{field("title", st.text(max_size=20))}{items}'
    text += "" if draw(st.booleans()) else "</channel></rss>"
    return text.encode("utf-8", "surrogatepass")


@st.composite
def json_feed(draw: st.DrawFn) -> bytes:
    item = st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "url": urls | json_values,
            "title": st.text(max_size=30) | json_values,
            "content_html": st.text(max_size=60) | json_values,
            "content_text": json_values,
            "summary": json_values,
            "date_published": dates | json_values,
            "authors": st.lists(st.dictionaries(st.just("name"), json_values)) | json_values,
            "author": json_values,
            "language": json_values,
        },
    )
    feed = draw(
        st.fixed_dictionaries(
            {"items": st.lists(item | json_values, max_size=4) | json_values},
            optional={
                "version": st.just("https://jsonfeed.org/version/1.1") | json_values,
                "title": json_values,
                "home_page_url": urls | json_values,
                "authors": json_values,
                "language": json_values,
            },
        )
    )
    return json.dumps(feed).encode()


@bounded
@given(
    body=st.binary(max_size=300) | rss() | json_feed(),
    content_type=st.none() | st.text(max_size=20),
)
@example(body=b"[" * 100_000, content_type="application/json")
@example(body=b'{"items": ' + b"[" * 100_000, content_type=None)
def test_the_feed_normaliser_gives_a_feed_or_says_why_not(body: bytes, content_type: str | None):
    check_feed(parse_feed(body, url="https://feed.example/rss", content_type=content_type))


# --- the rule-query parser -------------------------------------------------------------------
query_text = st.lists(
    st.sampled_from([*' ()"-*:abcé', "\u0301", "AND", "OR", "NOT", "title:", "lang:", "x:"]),
    max_size=25,
).map("".join) | st.text(max_size=40)


@bounded
@given(query=query_text)
@example(query="(" * 5_000 + "a" + ")" * 5_000)
@example(query="NOT " * 5_000 + "a")
@example(query="-" * 5_000 + "a")
def test_the_query_parser_gives_a_tree_or_a_column(query: str):
    try:
        node = parse(query)
    except QueryError as exc:
        assert 1 <= exc.column <= len(query) + 1 and exc.message
    else:
        assert isinstance(node, Node.__args__)  # type: ignore[attr-defined]


# --- the config loader -----------------------------------------------------------------------
SOURCE_KEYS = [
    "name",
    "url",
    "kind",
    "interval",
    "cron",
    "jitter",
    "enabled",
    "tags",
    "full_text",
    "links",
    "include",
    "robots",
    "allow_private_networks",
    "bogus",
]
RULE_KEYS = [
    "name",
    "query",
    "channels",
    "min_sources",
    "window",
    "group_wait",
    "digest",
    "quiet_hours",
    "bogus",
]
CHANNEL_KEYS = ["name", "type", "url", "secret", "to", "subject_prefix", "timeout", "bogus"]
plausible = json_values | st.sampled_from(
    [
        "10m",
        "1h",
        "5s",
        "*/5 * * * *",
        "61 * * * *",
        "a[",
        "div > a",
        ":::",
        "https://x.example/",
        "ftp://x",
        "webhook",
        "email",
        "apprise",
        "feed",
        "page",
        "${NOPE}",
        "${HOME:-x}",
        "0x_",
        "2026-02-30",
        "earthquake AND (",
        "22:00-06:00",
    ]
)


def section(keys: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(st.dictionaries(st.sampled_from(keys), plausible, max_size=6), max_size=3)


structured_config = st.fixed_dictionaries(
    {},
    optional={
        "sources": section(SOURCE_KEYS) | json_values,
        "rules": section(RULE_KEYS) | json_values,
        "channels": section(CHANNEL_KEYS) | json_values,
        "grouping": st.dictionaries(st.text(max_size=12), plausible, max_size=3) | json_values,
    },
).map(lambda data: yaml.safe_dump(data, allow_unicode=True))
yaml_text = st.lists(
    st.sampled_from([*"-:[]{}&*!|>'\"#%@`?,< \n\tab1", "<<", "!!", "\u2028"]), max_size=40
).map("".join) | st.text(max_size=60)


@bounded
@given(text=structured_config | yaml_text)
@example(text="a: &a [1]\n" + "\n".join(f"a{i}: &a{i} [{', '.join(['*a'] * 9)}]" for i in range(9)))
@example(text="x: 2026-02-30\n")
@example(text="x: \ud800\n")
@example(text="? [a]\n: b\n")
@example(text="sources:\n  - name: a\n    url: https://x.example/\n    interval: .inf\n")
@example(text="rules:\n  - name: r\n    query: a\n    window: 99999999999d\n")
@example(text="sources:\n  - name: a\n    url: https://x.example/\n    cron: '99 99 * * *'\n")
def test_the_config_loader_gives_a_config_or_the_place(text: str):
    try:
        config = parse_config_text(text, "prop.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.path and p.message for p in exc.problems)
        assert str(exc).startswith("prop.yaml: ")
    else:
        assert isinstance(config, FileConfig)


# --- the replay reader -----------------------------------------------------------------------
replay_record = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "url": urls | json_values,
        "source": json_values,
        "title": st.text(max_size=30) | json_values,
        "text": st.text(max_size=30) | json_values,
        "published": dates | json_values,
        "event": json_values,
    },
).map(json.dumps)


@bounded
@given(text=replay_record | st.text(max_size=80))
@example(text="[" * 100_000)
@example(text='{"title": "a", "published": "0001-01-01T00:00:00+01:00"}')
def test_the_replay_reader_gives_a_line_or_its_error(text: str):
    try:
        line = parse_line("in.jsonl", 7, text)
    except LineError as exc:
        assert exc.line == 7 and exc.path == "in.jsonl" and exc.message
    else:
        assert isinstance(line, ReplayLine) and (line.entry.title or line.entry.text)
        published = line.entry.published
        assert published is None or published.tzinfo is UTC  # storable as it is
