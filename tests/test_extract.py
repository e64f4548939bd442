"""Main-text extraction: metadata, decoding, bad input, `newswatch extract`, and the quality
over all 181 pages of the article-extraction benchmark (../shared/data)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from newswatch.fetch.extract import decode_html, extract_article
from tests import cli_support
from tests.conftest import SHARED_DATA, shared_corpus
from tests.localserver import LocalServer, static
from tests.test_pages import GOLD, JS_SHELL, PNG, cp1251_page, gold_start, page

BENCHMARK = SHARED_DATA / "extraction" / "article-extraction-benchmark"
FIXTURES = Path(__file__).parent / "fixtures" / "pages"


def test_article_metadata_and_text_without_page_furniture():
    ex = extract_article(page("plumes"), url=GOLD["plumes"]["url"], content_type="text/html")
    assert ex.error is None
    assert (
        ex.title
        == "NASA Just Confirmed There Are Water Plumes Above The Surface of Jupiter's Moon Europa"
    )
    assert ex.author == "Victor Tangermann; Futurism"
    assert ex.published is not None and ex.published.isoformat().startswith("2019-11-18")
    assert ex.language and ex.language.startswith("en")
    assert ex.canonical_url == GOLD["plumes"]["url"]
    assert ex.text.startswith(gold_start("plumes"))
    # Share bars, navigation and "related" lists stay out.
    for furniture in ("Share", "Subscribe", "Related", "Privacy Policy"):
        assert not any(line.strip() == furniture for line in ex.text.splitlines())


def test_og_url_is_the_canonical_url_when_there_is_no_link_rel():
    body = page("titan").replace(b'rel="canonical"', b'rel="nothing"')
    ex = extract_article(body, url="https://mirror.example/titan")
    og = re.search(rb'property="og:url" content="([^"]+)"', page("titan"))
    assert og is not None and ex.canonical_url == og.group(1).decode()


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (cp1251_page(meta=False), "text/html; charset=windows-1251", "cp1251"),
        (cp1251_page(meta=True), "text/html", "cp1251"),
        (cp1251_page(meta=False), "text/html", "cp1251"),  # detected
        # A wrong header charset that cannot decode the bytes is passed over.
        (page("skyrim"), "text/html; charset=ascii", "utf-8"),
    ],
)
def test_decoding_header_then_meta_then_detection(body, content_type, expected):
    text, encoding = decode_html(body, content_type)
    assert encoding == expected
    assert "Скайрим" in text
    ex = extract_article(body, content_type=content_type)
    assert ex.text.startswith(gold_start("skyrim", 40))


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (PNG, "text/html", "binary"),
        (b"%PDF-1.4\n" + b"x" * 500, None, "binary"),
        (b"<html>" + b"\x00" * 100, "text/html", "binary"),
        (b"GIF89a....", "image/gif", "Content-Type image/gif"),
        (JS_SHELL, "text/html", "no extractable main text"),
        (b"", "text/html", "empty body"),
        (b"   ", "text/html", "empty body"),
    ],
)
def test_bad_input_gives_a_reason_and_no_text(body, content_type, reason):
    ex = extract_article(body, url="https://x.example/a", content_type=content_type)
    assert ex.text is None
    assert ex.error and reason in ex.error


# --- the quality test: the benchmark's own metric ------------------------------------------

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _shingles(text: str, n: int = 4) -> Counter[str]:
    tokens = _TOKEN.findall(text or "")
    grams = (" ".join(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))
    return Counter(g for g in grams if g)


def score(gold: dict[str, str], predicted: dict[str, str]) -> tuple[float, float, float]:
    """Per page, token 4-gram shingles give precision and recall; each is averaged over the
    pages where it is defined; F1 of the two averages (the benchmark's evaluate.py)."""
    precisions, recalls = [], []
    for key, expected in gold.items():
        g, p = _shingles(expected), _shingles(predicted.get(key, ""))
        tp = sum((g & p).values())
        fp, fn = sum(p.values()) - tp, sum(g.values()) - tp
        if tp + fp:
            precisions.append(tp / (tp + fp))
        if tp + fn:
            recalls.append(tp / (tp + fn))
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _gold() -> dict[str, str]:
    data = json.loads((shared_corpus(BENCHMARK) / "ground-truth.json").read_text(encoding="utf-8"))
    return {key: value["articleBody"] for key, value in data.items()}


def test_the_metric_reproduces_the_benchmarks_published_figures():
    gold = _gold()
    for name, f1 in (("trafilatura", 0.958), ("readability", 0.922), ("html-text", 0.665)):
        stored = json.loads((BENCHMARK / "published" / f"{name}.json").read_text())
        stored = stored.get("output", stored)
        predicted = {key: value["articleBody"] for key, value in stored.items()}
        assert score(gold, predicted)[2] == pytest.approx(f1, abs=0.001), name


@pytest.mark.slow
def test_extraction_quality_on_the_181_benchmark_pages():
    gold = _gold()
    data = json.loads((BENCHMARK / "ground-truth.json").read_text(encoding="utf-8"))
    predicted = {}
    for key in gold:
        body = gzip.decompress((BENCHMARK / "html" / f"{key}.html.gz").read_bytes())
        predicted[key] = extract_article(body, url=data[key]["url"]).text or ""
    assert len(predicted) == 181
    precision, recall, f1 = score(gold, predicted)
    print(f"extraction P={precision:.4f} R={recall:.4f} F1={f1:.4f}")
    assert f1 >= 0.95
    assert precision >= 0.94 and recall >= 0.94


# --- newswatch extract ---------------------------------------------------------------------


def newswatch(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_support.newswatch(
        *args, env={"NEWSWATCH_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    )


def test_cli_extract_a_gzipped_file_as_json():
    done = newswatch(
        "extract", str(FIXTURES / "jpost.html.gz"), "--json", "--url", GOLD["jpost"]["url"]
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["title"].startswith("Son of former German president")
    assert data["text"].startswith(gold_start("jpost"))
    assert data["canonical_url"] == GOLD["jpost"]["url"]
    assert data["url"] == GOLD["jpost"]["url"]


def test_cli_extract_a_url_readably_and_fails_on_a_page_without_text(server: LocalServer):
    server.routes["/story"] = static(page("titan"), content_type="text/html")
    server.routes["/app"] = static(JS_SHELL, content_type="text/html")
    done = newswatch("extract", server.url("/story"))
    assert done.returncode == 0, done.stderr
    assert "title:" in done.stdout and "Titan" in done.stdout
    assert gold_start("titan") in done.stdout
    failed = newswatch("extract", server.url("/app"), "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["text"] is None
    assert "no extractable main text" in failed.stderr
    missing = newswatch("extract", "/nonexistent/page.html")
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_xhtml_with_an_xml_declaration_is_extracted():
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + page("titan")
    ex = extract_article(body, url="https://x.example/titan", content_type="application/xhtml+xml")
    assert ex.error is None and ex.text.startswith(gold_start("titan"))


def test_an_extractor_crash_is_a_reason_not_an_exception(monkeypatch):
    import newswatch.fetch.extract as extract

    def crash(tree, url):  # type: ignore[no-untyped-def]
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(extract, "_trafilatura", crash)
    ex = extract_article(page("titan"), url="https://x.example/titan")
    assert ex.text is None and "extraction failed" in ex.error and "RecursionError" in ex.error


def test_navigation_share_bar_and_more_from_lists_stay_out():
    story = (
        "the harbour authority said on Tuesday that the new pier would open to ferries in the "
        "spring, after two years of delays caused by storms and a shortage of steel."
    )
    paragraphs = "".join(f"<p>Paragraph {i}: {story}</p>" for i in range(6))
    body = f"""<!doctype html><html lang="en"><head><title>Pier to open | Coast Gazette</title>
    </head><body><header><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a>
    </li></ul></nav></header><main><article><h1>Pier to open in spring</h1>
    <p class="byline">By Ann Example</p><div class="share-bar"><a href="#">Share on Facebook</a>
    <a href="#">Share on Twitter</a></div>{paragraphs}</article>
    <aside class="related"><h2>More from Coast Gazette</h2><ul>
    <li><a href="/a">Storm closes coastal road for a week</a></li>
    <li><a href="/b">Ferry company orders two new ships</a></li></ul></aside></main>
    <footer><p>Copyright 2026 Coast Gazette. All rights reserved.</p></footer></body></html>"""
    ex = extract_article(body.encode(), url="https://coast.example/pier")
    assert ex.author == "Ann Example" and ex.language == "en"
    assert ex.text.count("harbour authority") == 6
    for furniture in ("Home", "Share on", "More from", "Storm closes", "Copyright"):
        assert furniture not in ex.text, furniture
