"""The events list's sorts in process (store.event_views.list_events + growth_of, what
GET /api/events runs before rendering JSON), against the limit: a plain indexed SELECT of the
same number of event rows (open events by id, newest first, from the primary key), which no
sort can beat.

    python bench/bench_events_list.py [--events 2000] [--per-event 10] [--rounds 5]
                                      [--calls 20] [--url DATABASE_URL]

The store is filled as bench/api_latency.py fills it (events spread over 72 hours, each
with `--per-event` reports from distinct sources over ten hours; Postgres is analyzed after
filling, as autovacuum would). Each round calls the limit and every sort `--calls` times in
turn (first page of 50, then the page after it), interleaved; prints ms per call,
min / median / max over all rounds, and each median over the limit's and over `latest`'s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Engine, text

from api_latency import fill
from newswatch.store.db import make_engine, session_scope, upgrade
from newswatch.store.event_views import SORTS, After, EventFilter, Sort, growth_of, list_events

PAGE = 50


def one_list(engine: Engine, sort: Sort, as_of: datetime) -> int:
    """The first two pages of a list as the API reads them: rows, then the page's growth."""
    shown = 0
    after: After | None = None
    for _ in range(2):
        with session_scope(engine) as session:
            rows = list_events(
                session, EventFilter(), sort=sort, limit=PAGE + 1, as_of=as_of, after=after
            )
            page = rows[:PAGE]
            if sort != "growth":
                growth_of(session, [r.id for r in page], as_of)
        shown += len(page)
        if len(rows) <= PAGE:
            break
        after = After(page[-1].sort_key, page[-1].id)
    return shown


# The limit: the page's event rows, read in primary-key order with nothing computed.
LIMIT_SQL = text(
    "SELECT id, title, first_seen, last_seen, article_count, source_count, top_entities, "
    "merged_into, split_from, created_at, updated_at FROM events "
    "WHERE merged_into IS NULL AND id < :after ORDER BY id DESC LIMIT :n"
)


def plain_pages(engine: Engine) -> int:
    """The limit: two pages of event rows, as one_list reads them, by a plain SELECT."""
    shown = 0
    after = 2**62
    for _ in range(2):
        with session_scope(engine) as session:
            rows = session.execute(LIMIT_SQL, {"after": after, "n": PAGE + 1}).all()
        page = rows[:PAGE]
        shown += len(page)
        if len(rows) <= PAGE:
            break
        after = page[-1].id
    return shown


def grown_on_first_page(engine: Engine, as_of: datetime) -> int:
    """Sources gained in the hour by the growth sort's first page (shows the count is not
    trivially zero)."""
    with session_scope(engine) as session:
        rows = list_events(session, EventFilter(), sort="growth", limit=PAGE, as_of=as_of)
        return sum(int(r.growth) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--per-event", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--url", help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{tmp}/bench.db")
        upgrade(engine)
        started = time.perf_counter()
        fill(engine, args.events, args.per_event)
        print(
            f"{engine.dialect.name}: {args.events:,} events, "
            f"{args.events * args.per_event:,} articles and sightings, "
            f"filled in {time.perf_counter() - started:.1f} s"
        )
        as_of = datetime.now(UTC)
        modes: dict[str, Callable[[], int]] = {"limit": lambda: plain_pages(engine)}
        for sort in SORTS:
            modes[sort] = lambda sort=sort: one_list(engine, sort, as_of)  # type: ignore[misc]
        samples: dict[str, list[float]] = {mode: [] for mode in modes}
        for mode, run in modes.items():  # warm-up, and the rows each shows
            print(f"  {mode}: {run()} events on two pages")
        print(f"  growth's first page gained {grown_on_first_page(engine, as_of)} sources")
        for _ in range(args.rounds):
            for mode, run in modes.items():
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    run()
                    samples[mode].append((time.perf_counter() - t0) * 1000)
        engine.dispose()
    limit = statistics.median(samples["limit"])
    latest = statistics.median(samples["latest"])
    print(f"two pages of {PAGE}, ms per list: min / median / max; median / limit's, / latest's")
    for mode, values in samples.items():
        median = statistics.median(values)
        print(
            f"  {mode:7} {min(values):8.2f} {median:8.2f} {max(values):8.2f}"
            f"   {median / limit:6.2f}x {median / latest:6.2f}x"
        )


if __name__ == "__main__":
    main()
