"""URL canonicalisation and content hashing for exact-duplicate detection."""

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


def canonical_url(url: str) -> str:
    """The canonical form used to recognise the same article under different URLs.

    Lower-case scheme and host (IDN as punycode), default port and fragment dropped, tracking
    parameters removed, the rest sorted, path percent-encoding normalised. Odd input comes
    back stripped rather than raising.
    """
    url = (url or "").strip()
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


# ASCII text folds in one bytes.translate: upper case to lower, and the four separator
# controls that str.split() counts as white space (bytes.split() does not) to spaces.
_FOLD_ASCII = bytes(c + 32 if 65 <= c <= 90 else 32 if 0x1C <= c <= 0x1F else c for c in range(256))


def _normalise_text(text: str) -> bytes:
    """Case-folded text with white-space runs as one space, UTF-8 encoded."""
    if text.isascii():  # the common case, in C without a str object per word
        return b" ".join(text.encode("ascii").translate(_FOLD_ASCII).split())
    text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().split()).encode("utf-8")


def content_hash(title: str, text: str) -> str:
    """SHA-256 over the case-folded, whitespace-normalised title and text."""
    return hashlib.sha256(_normalise_text(title) + b"\n" + _normalise_text(text)).hexdigest()
