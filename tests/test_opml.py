"""OPML import: the parser, and `newswatch sources import-opml` end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from newswatch.fetch.opml import parse_opml
from tests.cli_support import newswatch

FIXTURE = Path(__file__).parent / "fixtures" / "opml" / "subscriptions.opml"


def opml_with(guardian: str, heise: str) -> bytes:
    text = FIXTURE.read_text().replace("GUARDIAN_URL", guardian).replace("HEISE_URL", heise)
    return text.encode()


def test_nested_outlines_and_problems_with_lines():
    feeds, problems = parse_opml(opml_with("https://g.example/rss", "https://h.example/atom"))
    assert [(f.name, f.url) for f in feeds] == [
        ("Guardian World", "https://g.example/rss"),
        ("Heise", "https://h.example/atom"),
        ("Guardian again", "https://g.example/rss"),
    ]
    assert feeds[0].html_url == "https://www.theguardian.com/world" and feeds[0].line == 6
    assert any(p.startswith("line 10:") and "without xmlUrl" in p for p in problems)
    assert any(p.startswith("line 11:") and "ftp://" in p for p in problems)


def test_broken_xml_is_recovered_and_reported():
    data = (
        b'<opml version="2.0"><body>\n<outline xmlUrl="https://a.example/rss" text="A"/>\n'
        b'<outline xmlUrl="https://b.example/rss" text="B & C">\n</body>'
    )
    feeds, problems = parse_opml(data)
    assert "https://a.example/rss" in [f.url for f in feeds]
    assert problems and problems[0].startswith("line")


def test_entity_bomb_is_refused():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<opml><body><outline xmlUrl="https://x.example/&b;"/></body></opml>'
    )
    feeds, problems = parse_opml(bomb)
    assert feeds == [] and "refused" in problems[0]


def test_import_opml_command(store_url, tmp_path, server):
    from tests.localserver import static

    fixtures = Path(__file__).parent / "fixtures" / "poll"
    server.routes["/g"] = static((fixtures / "guardian.rss").read_bytes())
    server.routes["/h"] = static(
        (fixtures / "heise.atom").read_bytes(), content_type="application/atom+xml"
    )
    path = tmp_path / "subs.opml"
    path.write_bytes(opml_with(server.url("/g"), server.url("/h")))
    env = dict(os.environ, DATABASE_URL=store_url, NEWSWATCH_HTTP_MIN_HOST_DELAY="0")
    env.pop("NEWSWATCH_CONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return newswatch(*args, env=env)

    imported = run("sources", "import-opml", str(path))
    # Two feeds imported (the duplicate URL once), the broken outlines named by line; exit 1
    # tells scripts that something needs a look.
    assert imported.returncode == 1
    assert "imported 2 sources" in imported.stdout
    assert "line 10" in imported.stderr and "line 11" in imported.stderr
    again = run("sources", "import-opml", str(path))
    assert "imported 0 sources (3 already present)" in again.stdout
    listed = [json.loads(line) for line in run("sources", "list", "--json").stdout.splitlines()]
    assert sorted(s["name"] for s in listed) == ["Guardian World", "Heise"]
    assert {s["origin"] for s in listed} == {"opml"}
    polled = run("run", "--once")
    assert polled.returncode == 0, polled.stderr
    articles = run("articles", "list", "--json", "--limit", "500").stdout.splitlines()
    assert len(articles) > 50


def test_write_opml_round_trips_through_the_parser():
    from newswatch.fetch.opml import OpmlFeed, write_opml

    feeds = [
        OpmlFeed('Le Monde & "Libé" <fr>', "https://a.example/rss?x=1&y=2", None, None),
        OpmlFeed("Heise", "https://h.example/atom", "https://h.example/", None),
    ]
    back, problems = parse_opml(write_opml(feeds))
    assert problems == []
    assert [(f.name, f.url, f.html_url) for f in back] == [
        (f.name, f.url, f.html_url) for f in feeds
    ]


def test_export_opml_command_then_import_elsewhere(store_url, tmp_path):
    env = dict(os.environ, DATABASE_URL=store_url)
    env.pop("NEWSWATCH_CONFIG", None)

    def run(*args: str, url: str = store_url) -> subprocess.CompletedProcess:
        return newswatch(*args, env={**env, "DATABASE_URL": url})

    for name, url, kind in (
        ("wire", "https://wire.example/feed", "feed"),
        ("desk & co", "https://desk.example/rss", "auto"),
        ("front", "https://front.example/", "page"),
        ("paused", "https://paused.example/rss", "feed"),
    ):
        added = run("sources", "add", name, url, "--kind", kind)
        assert added.returncode == 0, added.stderr
    assert run("sources", "remove", "paused").returncode == 0  # disabled, history kept
    printed = run("sources", "export-opml")
    assert printed.returncode == 0, printed.stderr
    feeds, problems = parse_opml(printed.stdout.encode())
    # Feeds only (a page source is not one), disabled ones only with --all.
    assert problems == [] and [(f.name, f.url) for f in feeds] == [
        ("desk & co", "https://desk.example/rss"),
        ("wire", "https://wire.example/feed"),
    ]
    path = tmp_path / "all.opml"
    assert run("sources", "export-opml", str(path), "--all").returncode == 0
    assert [f.name for f in parse_opml(path.read_bytes())[0]] == ["desk & co", "paused", "wire"]
    # Another store imports the file as it is.
    other = f"sqlite:///{tmp_path / 'other.db'}"
    imported = run("sources", "import-opml", str(path), url=other)
    assert imported.returncode == 0 and "imported 3 sources" in imported.stdout
