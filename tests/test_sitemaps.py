"""News sitemaps: parsing (urlset, Google News, index, gzip, garbage) and a sitemap source
served on 127.0.0.1 filling the store (SQLite and Postgres)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

from sqlmodel import Session, select

from newswatch.config import SourceConfig
from newswatch.fetch.sitemaps import gunzip, parse_sitemap
from newswatch.store.models import Article, Source
from tests.localserver import LocalServer, static
from tests.test_pages import articles, fetches, gold_start, html, page, run_once

NEWS_NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" ' + (
    'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"'
)


def news_url(loc: str, title: str, published: str) -> str:
    return (
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>T</news:name>"
        f"<news:language>en</news:language></news:publication>"
        f"<news:publication_date>{published}</news:publication_date>"
        f"<news:title>{title}</news:title></news:news></url>"
    )


def urlset(*items: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset {NEWS_NS}>{"".join(items)}</urlset>'


def index(*locs: tuple[str, str | None]) -> str:
    parts = "".join(
        f"<sitemap><loc>{loc}</loc>{f'<lastmod>{mod}</lastmod>' if mod else ''}</sitemap>"
        for loc, mod in locs
    )
    return (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"{parts}</sitemapindex>"
    )


def test_parse_news_sitemap():
    body = urlset(
        news_url("https://n.example/a", "Storm &amp; flood", "2026-11-20T10:00:00+01:00"),
        "<url><loc>https://n.example/b</loc><lastmod>2026-11-19</lastmod></url>",
        "<url><loc>javascript:alert(1)</loc></url>",
        "<url><lastmod>2026-11-19</lastmod></url>",
    ).encode()
    parsed = parse_sitemap(body)
    assert parsed.error is None and not parsed.is_index
    a, b = parsed.urls
    assert (a.loc, a.title, a.language) == ("https://n.example/a", "Storm & flood", "en")
    assert a.published == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert b.title is None and b.when == datetime(2026, 11, 19, tzinfo=UTC)


def test_parse_index_gzip_and_garbage():
    gz = gzip.compress(index(("https://n.example/s1.xml", "2026-11-20")).encode())
    parsed = parse_sitemap(gz)
    assert parsed.is_index and parsed.urls[0].loc == "https://n.example/s1.xml"
    assert "root element is <html>" in (parse_sitemap(b"<html><body/></html>").error or "")
    assert "not a sitemap" in (parse_sitemap(b"\x00\x01garbage").error or "")
    assert parse_sitemap(b"").error
    # Entities are not expanded (no billion laughs, no local files).
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>https://n.example/&x;</loc></url></urlset>"
    )
    assert all("root:" not in u.loc for u in parse_sitemap(evil).urls)
    bomb = gzip.compress(b"<" * 2_000_000)
    assert "over the limit" in (parse_sitemap(bomb, limit=1_000_000).error or "")
    assert gunzip(gzip.compress(b"abc"), 10) == b"abc"


def test_sitemap_index_source_fills_the_store_once(engine, server: LocalServer):
    server.routes["/a/plumes"] = html(page("plumes"))
    server.routes["/a/titan"] = html(page("titan"))
    server.routes["/a/app"] = html(
        b"<html><body><div id=root></div><script>render()</script></body></html>"
    )
    elsewhere = f"http://localhost:{server.port}/a/jpost"  # another host, loopback
    server.routes["/a/jpost"] = html(page("jpost"))
    server.routes["/news-sitemap.xml"] = static(
        urlset(
            news_url(server.url("/a/plumes"), "Plumes on Europa", "2026-11-20T10:00:00Z"),
            news_url(server.url("/a/titan"), "A map of Titan", "2026-11-21T10:00:00Z"),
            news_url(server.url("/a/app"), "Live: the app", "2026-11-21T11:00:00Z"),
            news_url(elsewhere, "Elsewhere", "2026-11-21T12:00:00Z"),
        ),
        content_type="application/xml",
    )
    server.routes["/old-sitemap.xml.gz"] = static(
        gzip.compress(urlset().encode()), content_type="application/x-gzip"
    )
    server.routes["/sitemap_index.xml"] = static(
        index(
            (server.url("/old-sitemap.xml.gz"), "2020-01-01"),
            (server.url("/news-sitemap.xml"), "2026-11-21"),
        ),
        content_type="application/xml",
    )
    cfg = [SourceConfig(name="sm", url=server.url("/sitemap_index.xml"))]  # kind: auto
    [outcome] = run_once(engine, cfg)
    assert outcome.outcome == "ok", outcome.error
    assert outcome.new == 3

    stored = articles(engine)
    plumes = stored[server.url("/a/plumes")]
    assert plumes.title == "Plumes on Europa"  # the sitemap's news:title
    assert plumes.published == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert plumes.text.startswith(gold_start("plumes"))
    assert stored[server.url("/a/titan")].text.startswith(gold_start("titan"))
    # A page without text keeps the sitemap's title, like a feed entry without a summary.
    app = stored[server.url("/a/app")]
    assert app.title == "Live: the app" and app.text is None
    assert elsewhere not in stored and not server.hits("/a/jpost")
    log = fetches(engine)
    assert log[elsewhere].outcome == "blocked" and "loopback" in log[elsewhere].error
    assert log[server.url("/a/app")].outcome == "parse_error"
    assert log[server.url("/news-sitemap.xml")].outcome == "ok"
    with Session(engine) as s:
        assert s.exec(select(Source)).one().options["detected_kind"] == "sitemap"

    [again] = run_once(engine, cfg)
    assert again.outcome == "ok" and again.new == 0
    assert len(server.hits("/a/plumes")) == 1 and len(server.hits("/a/app")) == 1
    with Session(engine) as s:
        assert len(s.exec(select(Article)).all()) == 3


def test_broken_sitemap_is_a_parse_error(engine, server: LocalServer):
    server.routes["/sitemap.xml"] = static(b"<urlset><url><loc>", content_type="application/xml")
    server.routes["/html"] = static(b"<html><body>no</body></html>", content_type="text/html")
    cfg = [
        SourceConfig(name="broken", url=server.url("/sitemap.xml"), kind="sitemap"),
        SourceConfig(name="html", url=server.url("/html"), kind="sitemap"),
    ]
    outcomes = {o.source: o for o in run_once(engine, cfg)}
    assert outcomes["html"].outcome == "parse_error"
    assert "not a sitemap" in outcomes["html"].error
    # Recovered parsing of a truncated sitemap finds no URL: nothing stored, no failure.
    assert outcomes["broken"].outcome == "ok" and outcomes["broken"].new == 0
