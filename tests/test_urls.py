"""URL canonicalisation and content hashes."""

from __future__ import annotations

import hashlib
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newswatch.dedupe_keys import canonical_url, content_hash


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://WWW.Example.COM/a/b?x=1#frag", "https://www.example.com/a/b?x=1"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("https://ex.com/a?utm_source=rss&utm_medium=feed&id=7", "https://ex.com/a?id=7"),
        ("https://ex.com/a?fbclid=abc&gclid=def&b=2&a=1", "https://ex.com/a?a=1&b=2"),
        ("https://ex.com/a?mc_cid=1&mc_eid=2&igshid=3", "https://ex.com/a"),
        ("https://ex.com", "https://ex.com/"),
        ("https://ex.com//a///b", "https://ex.com/a/b"),
        ("https://ex.com/caf%C3%A9", "https://ex.com/caf%C3%A9"),
        ("https://ex.com/café", "https://ex.com/caf%C3%A9"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("https://example.com./x", "https://example.com/x"),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


@pytest.mark.parametrize("odd", ["", "not a url", "mailto:a@b.c", "http://[::1", "ftp://x/y"])
def test_odd_input_never_raises(odd):
    assert isinstance(canonical_url(odd), str)


@given(st.text(max_size=200))
def test_canonical_url_is_total_and_idempotent(text):
    once = canonical_url(text)
    assert canonical_url(once) == once


@given(
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z]{1,10}\.(com|org|de)", fullmatch=True),
    st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), max_size=4),
)
def test_tracking_parameters_never_matter(scheme, host, path):
    base = f"{scheme}://{host}/{'/'.join(path)}"
    assert canonical_url(base + "?utm_campaign=x&fbclid=y") == canonical_url(base)


def test_content_hash_ignores_case_and_whitespace_only():
    a = content_hash("Quake hits Chile", "A strong  earthquake\nstruck.")
    assert a == content_hash("quake HITS chile", "A strong earthquake struck.")
    assert a != content_hash("Quake hits Peru", "A strong earthquake struck.")
    assert len(a) == 64


def _reference_hash(title: str, text: str) -> str:
    """The definition: NFKC, case-fold, white-space runs to one space (str.split's notion of
    white space), SHA-256 of title and text joined by a newline."""

    def norm(s: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", s).casefold().split())

    return hashlib.sha256(f"{norm(title)}\n{norm(text)}".encode()).hexdigest()


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)), st.text())
def test_content_hash_follows_its_definition(ascii_text: str, any_text: str) -> None:
    # Stored hashes must not change: the ASCII fast path (bytes) agrees with the definition,
    # including the separator controls \x1c-\x1f that str.split() treats as white space.
    for title, text in ((ascii_text, any_text), (any_text, ascii_text), ("A\x1cB", " x\x1fY ")):
        assert content_hash(title, text) == _reference_hash(title, text)


def test_the_white_space_lists_are_str_splits():
    from newswatch import dedupe_keys as urls

    every = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    ascii_space = {c for c in every if c.isascii()}
    assert set(urls._ASCII_SPACE.decode("ascii")) == ascii_space
    assert every - ascii_space == urls._OTHER_SPACE


# Text that exercises every branch: white space of each kind in runs, letters that casefold
# to themselves and ones that do not (ß, Σ, K), characters NFKC changes (ﬁ, ½, ¨).
_TRICKY = st.text(
    alphabet=st.sampled_from(
        list("aZ \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u1680\u2003\u2028\u2029\u3000")
        + list("’“—éßΣςKİﬁ½¨\u0301Ǆ")
    )
)


@given(_TRICKY, _TRICKY)
def test_content_hash_follows_its_definition_on_tricky_text(title: str, text: str) -> None:
    assert content_hash(title, text) == _reference_hash(title, text)


_URLISH = st.builds(
    "".join,
    st.lists(
        st.sampled_from(
            [
                "http",
                "https",
                "HTTP",
                "://",
                "/",
                "//",
                "a",
                "Z",
                "0",
                ".",
                "-",
                "_",
                "~",
                ":",
                "80",
                "?",
                "=",
                "&",
                "#",
                "%41",
                "%2F",
                "é",
                " ",
                "\t",
                "@",
                "[",
                "utm_x=1",
            ]
        ),
        max_size=14,
    ),
)


@given(_URLISH)
def test_the_plain_url_shortcut_agrees_with_the_parser(url: str) -> None:
    from newswatch.dedupe_keys import _canonical_url

    for candidate in (url, "https://" + url, "http://ex.ample/" + url):
        assert canonical_url(candidate) == _canonical_url(candidate.strip())


@pytest.mark.parametrize(
    "url", ["https://ex.ample", "https://ex.ample/", "http://a.b/c/d.html", "https://a/b/"]
)
def test_plain_urls_take_the_shortcut_unchanged(url):
    from newswatch.dedupe_keys import _PLAIN, _canonical_url

    assert _PLAIN.fullmatch(url) and canonical_url(url) == _canonical_url(url)
