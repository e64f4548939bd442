"""Page sources end to end: a listing page served on 127.0.0.1 linking to real article pages
(from the extraction benchmark, tests/fixtures/pages), robots.txt, redirects, bad bodies,
windows-1251 pages, full text for feeds, the private-network guard; SQLite and Postgres."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import Session, select

from newswatch.config import ConfigError, FileConfig, Settings, SourceConfig, parse_config_text
from newswatch.fetch.http import FetchResult
from newswatch.fetch.page_sources import detect_kind, discover_links, same_site
from newswatch.service import Service
from newswatch.store.models import Article, Fetch, Source
from tests.localserver import LocalServer, static

FIXTURES = Path(__file__).parent / "fixtures" / "pages"
GOLD = json.loads((FIXTURES / "ground-truth.json").read_text(encoding="utf-8"))
MAX_BODY = 1_000_000


def page(name: str) -> bytes:
    return gzip.decompress((FIXTURES / f"{name}.html.gz").read_bytes())


def gold_start(name: str, chars: int = 60) -> str:
    return GOLD[name]["articleBody"][:chars]


def cp1251_page(meta: bool) -> bytes:
    """The Russian fixture page re-encoded as windows-1251, with or without <meta charset>."""
    html = page("skyrim").decode("utf-8")
    html = html.replace('<meta charset="UTF-8">', '<meta charset="windows-1251">' if meta else "")
    return html.encode("windows-1251", errors="xmlcharrefreplace")


JS_SHELL = (
    b"<!doctype html><html><head><title>App</title><script src='/app.js'></script></head>"
    b"<body><div id='root'></div><noscript>Please enable JavaScript.</noscript></body></html>"
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20


def settings(**extra: object) -> Settings:
    values: dict[str, object] = {
        "NEWSWATCH_HTTP_MIN_HOST_DELAY": 0,
        "NEWSWATCH_HTTP_READ_TIMEOUT": 5,
        "NEWSWATCH_HTTP_MAX_BODY_BYTES": MAX_BODY,
        "NEWSWATCH_PARSE_WORKERS": 0,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def run_once(engine, sources: list[SourceConfig]):  # type: ignore[no-untyped-def]
    """One pass of a fresh service (as after a restart)."""
    return asyncio.run(Service(engine, FileConfig(sources=sources), settings()).run_once())


def html(body: bytes | str, charset: str | None = "utf-8"):  # type: ignore[no-untyped-def]
    ctype = f"text/html; charset={charset}" if charset else "text/html"
    return static(body, content_type=ctype)


def redirect(location: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": location})

    return handler


def listing(links: list[str]) -> str:
    items = "".join(
        f'<li><h2><a href="{href}">Story {i}</a></h2></li>' for i, href in enumerate(links)
    )
    return (
        "<html><head><title>Latest news</title></head><body>"
        '<nav><a href="/">Home</a> <a href="/tag/space">Space</a> <a href="/about">About</a></nav>'
        f'<main><ul class="stories">{items}</ul></main>'
        '<footer><a href="/news/2019/footer-story">Footer story</a></footer></body></html>'
    )


def serve_site(server: LocalServer) -> list[str]:
    """The site: articles, bad pages, robots.txt; returns the listing's article links."""
    routes = {
        "/news/2019/plumes": html(page("plumes")),
        "/news/2019/titan": html(page("titan")),
        "/news/2019/jpost-old": redirect("/archive/jpost"),
        "/archive/jpost": html(page("jpost")),
        "/news/2019/russian-header": html(cp1251_page(meta=False), charset="windows-1251"),
        "/news/2019/russian-meta": html(cp1251_page(meta=True), charset=None),
        "/news/2019/app": html(JS_SHELL),
        "/news/2019/photo.html": html(PNG),
        "/news/2019/huge": html(b"<html><body>" + b"<p>word " * (MAX_BODY // 8) + b"</body>"),
        "/news/private/secret": html(page("titan")),
        "/robots.txt": static(
            "User-agent: *\nDisallow: /news/private/\n", content_type="text/plain"
        ),
    }
    server.routes.update(routes)
    links = [p for p in routes if p.startswith("/news/")]
    links.append(f"http://localhost:{server.port}/news/2019/elsewhere")  # another host
    server.routes["/news/"] = html(listing(links))
    return links


def articles(engine) -> dict[str, Article]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return {a.url: a for a in s.exec(select(Article)).all()}  # type: ignore[misc]


def fetches(engine) -> dict[str, Fetch]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return {f.url: f for f in s.exec(select(Fetch).order_by(Fetch.id)).all()}  # type: ignore[arg-type]


def log_row(engine, url: str) -> Fetch:  # type: ignore[no-untyped-def]
    return fetches(engine)[url]


def test_page_source_stores_each_new_article_once_and_records_bad_pages(engine, server):
    serve_site(server)
    cfg = [SourceConfig(name="site", url=server.url("/news/"), kind="page", include=r"/news/")]
    [outcome] = run_once(engine, cfg)
    assert outcome.outcome == "ok", outcome.error

    stored = articles(engine)
    u = server.url
    assert set(stored) == {
        u("/news/2019/plumes"),
        u("/news/2019/titan"),
        u("/archive/jpost"),  # after the redirect
        u("/news/2019/russian-header"),
    }
    plumes = stored[u("/news/2019/plumes")]
    assert plumes.text.startswith(gold_start("plumes"))
    assert "Europa" in plumes.title and plumes.author and plumes.published
    assert plumes.language.startswith("en")
    # The page names www.sciencealert.com as canonical: another site, so it is not trusted.
    assert plumes.canonical_url == u("/news/2019/plumes")
    assert stored[u("/archive/jpost")].text.startswith(gold_start("jpost"))
    russian = stored[u("/news/2019/russian-header")]
    assert russian.text.startswith(gold_start("skyrim", 40))
    assert russian.title.startswith("Скайрим")
    # Without the charset header (only <meta>) the page decodes to the very same title and
    # text: the same content hash, so the same article (a sighting, no second article).
    assert log_row(engine, u("/news/2019/russian-meta")).outcome == "ok"
    assert outcome.entries == 5 and outcome.new == 4
    assert all(a.text and len(a.text) > 200 for a in stored.values())

    log = fetches(engine)
    assert log[u("/news/")].outcome == "ok" and log[u("/news/")].new_articles == 4
    assert log[u("/news/2019/app")].outcome == "parse_error"
    assert "no extractable main text" in log[u("/news/2019/app")].error
    assert log[u("/news/2019/photo.html")].outcome == "parse_error"
    assert "binary" in log[u("/news/2019/photo.html")].error
    assert log[u("/news/2019/huge")].outcome == "too_large"
    assert log[u("/news/private/secret")].outcome == "blocked"
    assert "robots.txt" in log[u("/news/private/secret")].error
    assert not server.hits("/news/private/secret")
    # Same-site links only: the link to another host is not even a candidate.
    assert not any("localhost" in url for url in log)
    # The footer link matches the pattern too; nav links do not.
    assert not server.hits("/tag/space") and not server.hits("/about")

    # A restarted service polls the listing again but fetches no article page twice.
    before = {path: len(server.hits(path)) for path in ("/news/2019/plumes", "/news/2019/app")}
    [again] = run_once(engine, cfg)
    assert again.outcome == "ok" and again.new == 0
    assert {p: len(server.hits(p)) for p in before} == before
    assert len(server.hits("/news/")) == 2
    assert len(articles(engine)) == 4


def test_links_selector_and_robots_opt_out(engine, server):
    links = serve_site(server)
    server.routes["/robots.txt"] = static("User-agent: *\nDisallow: /\n", content_type="text/plain")
    cfg = [SourceConfig(name="sel", url=server.url("/news/"), links="main .stories h2 a")]
    [first] = run_once(engine, cfg)
    # kind: auto is not known to be a page before the first fetch; then every article is
    # refused, and from the next poll on the listing itself.
    assert first.outcome == "ok" and first.entries == 0
    assert {f.outcome for url, f in fetches(engine).items() if "/2019/" in url} == {"blocked"}
    [blocked] = run_once(engine, cfg)
    assert blocked.outcome == "blocked" and "robots.txt" in blocked.error
    assert len(server.hits("/news/")) == 1
    assert not any(r.path.startswith("/news/2019/") for r in server.requests)

    cfg = [
        SourceConfig(name="sel", url=server.url("/news/"), links="main .stories h2 a", robots=False)
    ]
    [outcome] = run_once(engine, cfg)
    # Six pages with text, two of them copies (same title and text) of others.
    assert outcome.outcome == "ok" and (outcome.entries, outcome.new) == (6, 4)
    assert not server.hits("/news/2019/footer-story")  # outside the selector
    assert len(server.hits("/news/private/secret")) == 1  # robots: false
    with Session(engine) as s:
        source = s.exec(select(Source)).one()
        assert source.options["detected_kind"] == "page"
        assert source.title == "Latest news"
    assert len(links) > 5


def test_listing_without_links_is_a_parse_error_and_the_source_keeps_running(engine, server):
    server.routes["/empty"] = html("<html><head><title>x</title></head><body>Nothing</body></html>")
    server.routes["/bin.html"] = html(PNG)
    cfg = [
        SourceConfig(name="empty", url=server.url("/empty"), kind="page"),
        SourceConfig(name="bin", url=server.url("/bin.html"), kind="page"),
    ]
    for _ in range(2):
        outcomes = {o.source: o for o in run_once(engine, cfg)}
    assert outcomes["empty"].outcome == "parse_error"
    assert "no article links" in outcomes["empty"].error
    assert outcomes["bin"].outcome == "parse_error" and "binary" in outcomes["bin"].error
    with Session(engine) as s:
        by_name = {src.name: src for src in s.exec(select(Source)).all()}
    assert by_name["empty"].enabled and by_name["empty"].consecutive_errors == 2
    assert articles(engine) == {}


def feed(links: list[str]) -> str:
    items = "".join(
        f"<item><title>Entry {i}</title><link>{href}</link><guid>{href}</guid>"
        f"<description>Summary {i}</description></item>"
        for i, href in enumerate(links)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F</title>{items}</channel></rss>'
    )


def test_full_text_feed_and_the_private_network_guard(engine, server):
    serve_site(server)
    here = server.url("/news/2019/plumes")
    elsewhere = f"http://localhost:{server.port}/news/2019/titan"  # resolves to loopback
    server.routes["/feed"] = static(feed([here, elsewhere, "file:///etc/passwd"]))
    cfg = [SourceConfig(name="f", url=server.url("/feed"), kind="feed", full_text=True)]
    [outcome] = run_once(engine, cfg)
    assert outcome.outcome == "ok" and outcome.new == 3

    stored = articles(engine)
    assert stored[here].summary == "Summary 0"
    assert stored[here].text.startswith(gold_start("plumes"))
    assert stored[elsewhere].summary == "Summary 1" and stored[elsewhere].text is None
    log = fetches(engine)
    assert log[elsewhere].outcome == "blocked" and "loopback" in log[elsewhere].error
    assert log["file://etc/passwd"].outcome == "blocked"  # (as feedparser gives it)
    assert not server.hits("/news/2019/titan")

    # Allowed explicitly, a loopback page on another host name is fetched.
    server.routes["/feed2"] = static(feed([f"http://localhost:{server.port}/archive/jpost"]))
    cfg = [
        SourceConfig(
            name="g",
            url=server.url("/feed2"),
            kind="feed",
            full_text=True,
            allow_private_networks=True,
        )
    ]
    [allowed] = run_once(engine, cfg)
    assert allowed.new == 1 and len(server.hits("/archive/jpost")) == 1
    assert max(articles(engine).values(), key=lambda a: a.id).text.startswith(gold_start("jpost"))


def test_discover_links_is_same_site_and_skips_navigation():
    body = listing(
        ["/news/a-story", "/tag/x", "/world", "https://other.example/news/b-c", "/news/a-story#c"]
    ).encode()
    found = discover_links(body, "text/html", "https://www.site.example/news/")
    urls = [c.url for c in found.links]
    assert urls == [
        "https://www.site.example/news/a-story",
        "https://www.site.example/news/2019/footer-story",
    ]
    assert found.title == "Latest news" and found.links[0].title == "Story 0"
    bad = discover_links(b"<html><body><a href=x>x</a></body></html>", None, "https://s/", "a[")
    assert bad.error and "CSS selector" in bad.error
    assert same_site("https://news.site.example/x", "https://www.site.example/")
    assert not same_site("https://site.example.evil/x", "https://site.example/")


def test_detect_kind_tells_pages_and_sitemaps_from_feeds():
    def result(body: bytes) -> FetchResult:
        return FetchResult("u", "u", "ok", body=body)

    assert detect_kind(result(b"<!DOCTYPE html><html><body></body></html>")) == "page"
    assert detect_kind(result(b'<?xml version="1.0"?><urlset xmlns="x"></urlset>')) == "sitemap"
    assert detect_kind(result(b'<?xml version="1.0"?><rss><channel/></rss>')) == "feed"
    assert detect_kind(result(b'{"version": "https://jsonfeed.org/version/1.1"}')) == "feed"
    assert detect_kind(result(b"plain words")) is None


def test_page_options_are_validated_with_their_path_and_line():
    text = (
        "sources:\n"
        "  - name: ok\n"
        "    url: https://a.example/news/\n"
        "    kind: page\n"
        "  - name: bad\n"
        "    url: https://b.example/\n"
        "    kind: listing\n"
        '    links: "main >> a["\n'
        '    include: "(unclosed"\n'
        "    robots: maybe\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "pages.yaml")
    problems = {p.path: p for p in caught.value.problems}
    assert set(problems) == {
        "sources[1].kind",
        "sources[1].links",
        "sources[1].include",
        "sources[1].robots",
    }
    assert "CSS selector" in problems["sources[1].links"].message
    assert "regular expression" in problems["sources[1].include"].message
    assert problems["sources[1].include"].line == 9


def test_cli_adds_a_page_source_with_its_options(store_url: str):
    from click.testing import CliRunner

    from newswatch.cli import main
    from newswatch.store.db import make_engine

    runner = CliRunner()
    base = ["--database-url", store_url, "sources", "add"]
    flags = ["--include", "/20\\d\\d/", "--no-robots"]
    done = runner.invoke(
        main,
        [*base, "p", "https://n.example/news/", "--kind", "page", "--links", "main a", *flags],
    )
    assert done.exit_code == 0, done.output
    bad = runner.invoke(main, [*base, "q", "https://n.example/", "--include", "("])
    assert bad.exit_code != 0 and "include" in bad.output
    engine = make_engine(store_url)
    with Session(engine) as s:
        source = s.exec(select(Source)).one()
    engine.dispose()
    assert source.kind == "page"
    assert source.options["links"] == "main a" and source.options["include"] == "/20\\d\\d/"
    assert source.options["robots"] is False and source.options["full_text"] is False


def test_a_redirect_to_a_loopback_host_is_refused_at_the_hop(engine, server):
    server.routes["/news/2019/titan"] = html(page("titan"))
    server.routes["/news/2019/hop-away"] = redirect(
        f"http://localhost:{server.port}/news/2019/titan"
    )
    server.routes["/news/"] = html(listing(["/news/2019/hop-away"]))
    cfg = [SourceConfig(name="hop", url=server.url("/news/"), kind="page")]
    [outcome] = run_once(engine, cfg)
    assert outcome.outcome == "ok" and outcome.new == 0
    row = fetches(engine)[f"http://localhost:{server.port}/news/2019/titan"]
    assert row.outcome == "blocked" and "loopback" in row.error
    assert len(server.hits("/news/2019/hop-away")) == 1 and not server.hits("/news/2019/titan")
