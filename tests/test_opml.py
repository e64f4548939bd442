"""OPML import: the parser, and `newswatch sources import-opml` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from newswatch.fetch.opml import parse_opml

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
        return subprocess.run(
            [sys.executable, "-m", "newswatch", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

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
