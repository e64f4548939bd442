"""URL canonicalisation and content hashing for exact-duplicate detection: an article's keys.

A neutral module (pure functions, no imports of newswatch): the store dedupes by these keys and
page sources compare candidate links by them, so it belongs to neither.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters that only say how a reader arrived; they never change the article.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gclsrc",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "hsctatracking",
        "mkt_tok",
        "ref_src",
        "ref_url",
        "cmpid",
        "ito",
        "ns_mchannel",
        "ns_source",
        "ns_campaign",
        "ns_linkname",
        "ns_fee",
        "oly_anon_id",
        "oly_enc_id",
        "rss",
        "s_cid",
        "sr_share",
        "vero_conv",
        "vero_id",
        "wt.mc_id",
        "xtor",
        "at_medium",
        "at_campaign",
        "spm",
        "__twitter_impression",
        "share",
        "smid",
        "partner",
        "cmp",
        "ocid",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "ga_", "hmb_", "ncid")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


# A URL already in canonical form but for an empty path: lower-case http(s) scheme and host,
# no port, user, query or fragment, a path of unreserved characters without "//". Most
# article URLs; they skip the parsing below (which returns them unchanged, tested).
_PLAIN = re.compile(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?:/[A-Za-z0-9._~-]+)*/?")


def canonical_url(url: str) -> str:
    """The canonical form used to recognise the same article under different URLs.

    Lower-case scheme and host (IDN as punycode), default port and fragment dropped, tracking
    parameters removed, the rest sorted, path percent-encoding normalised. Odd input comes
    back stripped rather than raising.
    """
    url = (url or "").strip()
    if _PLAIN.fullmatch(url):
        return url if url.count("/") > 2 else url + "/"
    return _canonical_url(url)


def _canonical_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return url
    host = _host(parts.hostname)
    if port and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = quote(unquote(parts.path or "/"), safe="/:@!$&'()*+,;=-._~%")
    path = re.sub(r"/{2,}", "/", path)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    ]
    query.sort()
    return urlunsplit((scheme, host, path, urlencode(query, doseq=True), ""))


# White space as str.split() knows it (str.isspace), ASCII and not; tests check the lists.
_ASCII_SPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_OTHER_SPACE = frozenset(
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# One bytes.translate folds ASCII upper case to lower and every ASCII white space to a space;
# bytes of multi-byte UTF-8 sequences (>= 0x80) are left alone.
_FOLD_ASCII = bytes(c + 32 if 65 <= c <= 90 else 32 if c in _ASCII_SPACE else c for c in range(256))
_ASCII_BYTES = bytes(range(128))


def _normalise_text(text: str) -> bytes:
    """Case-folded (NFKC first) text with white-space runs as one space, UTF-8 encoded:
    " ".join(NFKC(text).casefold().split()).encode().

    Done on bytes, in C, without a str object per word: white space becomes spaces, runs of
    spaces are collapsed. Text whose non-ASCII characters casefold to themselves (quotes,
    dashes, lower-case accented letters: most news text) is folded by the ASCII
    table alone."""
    if text.isascii():
        data = text.encode("ascii")
    else:
        text = unicodedata.normalize("NFKC", text)
        data = text.encode("utf-8")
        others = data.translate(None, _ASCII_BYTES).decode("utf-8")
        if others.casefold() != others:
            data = text.casefold().encode("utf-8")
            others = data.translate(None, _ASCII_BYTES).decode("utf-8")
        if not _OTHER_SPACE.isdisjoint(others):
            for space in _OTHER_SPACE.intersection(others):
                data = data.replace(space.encode("utf-8"), b" ")
    data = data.translate(_FOLD_ASCII)
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data.strip(b" ")


def content_hash(title: str, text: str) -> str:
    """SHA-256 over the case-folded, whitespace-normalised title and text."""
    return hashlib.sha256(_normalise_text(title) + b"\n" + _normalise_text(text)).hexdigest()
