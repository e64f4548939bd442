"""Chaos run: `newswatch run` against a loopback feed farm, SIGKILLed at random moments.

    python bench/chaos.py [--minutes 5] [--feeds 30] [--seed 1]

Each life: when the store holds every entry the farm serves now, the farm moves on a
generation (20 new entries a feed); then `newswatch run` starts and is SIGKILLed after a
random 1-20 s (some kills land in start-up, some mid-write, some mid-delivery). After each
kill: every process it started is gone within ORPHAN_SECONDS and SQLite's
`PRAGMA integrity_check` says ok. At the end one clean life catches up and is stopped by
SIGTERM, and the invariants are checked:
- every article the farm served (every entry of every generation) is stored exactly once;
- every due notification was sent and its Idempotency-Key received (a repeat after a kill
  mid-send is allowed by design, docs/webhooks.md, and counted; a missing key is not);
- `PRAGMA integrity_check` ok, no orphaned process, no fatal error logged.
A rule matching nearly every article sends each new event to a webhook receiver on
127.0.0.1. Prints a JSON report; exits 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from tests.reliability.processes import Newswatch, wait_for  # noqa: E402

from bench_alert_latency import Receiver  # noqa: E402
from feedfarm import ENTRIES_PER_FEED, FeedFarm  # noqa: E402

ORPHAN_SECONDS = 10.0
LIFE_SECONDS = (1.0, 20.0)
CATCH_UP_SECONDS = 180.0
FARM_URL = re.compile(r"^https://farm\.example/(\d+)/(\d+)/(\d+)$")


def check_farm(farm: FeedFarm) -> None:
    """The farm's port was free when picked, not necessarily when bound: make sure the feeds
    come from the farm and not from another program that took the port meanwhile."""
    with urllib.request.urlopen(farm.url(0), timeout=10) as response:
        if b"Farm feed 0" not in response.read():
            raise RuntimeError(f"{farm.url(0)} is not the feed farm")


def write_config(folder: Path, farm: FeedFarm, hook: str) -> Path:
    sources = "".join(
        f"  - name: farm-{n}\n    url: {farm.url(n)}\n    interval: 10s\n    jitter: 0s\n"
        for n in range(farm.feeds)
    )
    path = folder / "newswatch.yaml"
    path.write_text(
        f"sources:\n{sources}"
        "channels:\n"
        f"  - name: hook\n    type: webhook\n    url: {hook}\n    secret: chaos\n"
        "rules:\n"
        "  - name: everything\n    query: 'the OR a OR of OR to OR in'\n"
        "    min_sources: 1\n    group_wait: 0s\n    channels: [hook]\n"
    )
    return path


def service_env(folder: Path, config: Path) -> dict[str, str]:
    return dict(os.environ) | {
        "DATABASE_URL": f"sqlite:///{folder / 'chaos.db'}",
        "NEWSWATCH_CONFIG": str(config),
        "NEWSWATCH_HTTP_HOST": "127.0.0.1",
        "NEWSWATCH_HTTP_PORT": "0",
        "NEWSWATCH_HTTP_MIN_HOST_DELAY": "0",  # every feed is on 127.0.0.1
        "NEWSWATCH_FIRST_RUN_SPREAD": "0",
        "NEWSWATCH_PARSE_WORKERS": "2",
        "NEWSWATCH_DELIVERY_LEASE": "5",  # a send cut by a kill is retried soon
    }


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # before the first migration
            return []


def stored_entries(db: Path) -> Counter[tuple[int, int, int]]:
    """(feed, generation, entry) of every stored farm article, counted."""
    found: Counter[tuple[int, int, int]] = Counter()
    for (url,) in query(db, "SELECT url FROM articles"):
        match = FARM_URL.match(str(url))
        if match:
            feed, gen, n = map(int, match.groups())
            found[(feed, gen, n)] += 1
    return found


def served(feeds: int, generations: int) -> set[tuple[int, int, int]]:
    return {
        (feed, gen, n)
        for feed in range(feeds)
        for gen in range(generations)
        for n in range(ENTRIES_PER_FEED)
    }


def generation_stored(db: Path, feeds: int, generation: int) -> bool:
    have = stored_entries(db)
    return all(
        have[(feed, generation, n)] for feed in range(feeds) for n in range(ENTRIES_PER_FEED)
    )


def due_notifications(db: Path) -> int:
    rows = query(db, "SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending')")
    return int(rows[0][0]) if rows else 0


def integrity(db: Path) -> str:
    rows = query(db, "PRAGMA integrity_check")
    return str(rows[0][0]) if rows else "no store"


def one_life(env: dict[str, str], log: Path, seconds: float) -> dict[str, object]:
    """Start the service, SIGKILL it after `seconds`, wait for its children to go."""
    nw = Newswatch(["run"], env, log).start()
    time.sleep(seconds)  # the random moment of the kill (not an assertion)
    children = len(nw.children())
    nw.signal(signal.SIGKILL)
    nw.wait(30)
    killed_at = time.monotonic()
    try:
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "orphans")
        orphans = 0
    except AssertionError:
        orphans = len(nw.family())
    life = {
        "seconds": round(seconds, 1),
        "children_at_kill": children,
        "orphans": orphans,
        "orphans_gone_s": round(time.monotonic() - killed_at, 2),
        "fatal_logged": len(nw.logged("fatal error")),
    }
    nw.stop()
    return life


def run(minutes: float, feeds: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    receiver = Receiver()
    report: dict[str, object] = {"minutes": minutes, "feeds": feeds, "seed": seed}
    lives: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="newswatch-chaos-") as tmp, FeedFarm(feeds) as farm:
        check_farm(farm)
        folder = Path(tmp)
        db = folder / "chaos.db"
        env = service_env(folder, write_config(folder, farm, receiver.url))
        generations = 1
        integrity_failures = 0
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            if generation_stored(db, feeds, generations - 1):
                farm.bump()
                generations += 1
            life = one_life(env, folder / f"life-{len(lives)}.log", rng.uniform(*LIFE_SECONDS))
            life["integrity"] = integrity(db)
            integrity_failures += life["integrity"] not in ("ok", "no store")
            lives.append(life)
            print(json.dumps(life), file=sys.stderr)
        final = clean_life(env, folder / "final.log", db, feeds, generations)
        expected = served(feeds, generations)
        have = stored_entries(db)
        keys = {str(k) for (k,) in query(db, "SELECT idempotency_key FROM notifications")}
        statuses = dict(query(db, "SELECT status, count(*) FROM notifications GROUP BY status"))
        received = receiver.received
        report |= {
            "lives": len(lives),
            "kills_with_parse_pool": sum(1 for life in lives if life["children_at_kill"]),
            "max_orphans_gone_s": max((life["orphans_gone_s"] for life in lives), default=0),
            "generations": generations,
            "articles_served": len(expected),
            "articles_stored": sum(have.values()),
            "articles_missing": len(expected - set(have)),
            "articles_stored_twice": sum(1 for n in have.values() if n > 1),
            "articles_not_served": len(set(have) - expected),
            "notifications": len(keys),
            "notification_status": statuses,
            "keys_missing": len(keys - set(received)),
            "keys_unknown": len(set(received) - keys),
            "keys_repeated": sum(1 for n in received.values() if n > 1),
            "integrity_failures": integrity_failures + (integrity(db) != "ok"),
            "orphaned_lives": sum(1 for life in lives if life["orphans"]),
            "fatal_errors_logged": sum(int(life["fatal_logged"]) for life in lives),
        } | final
    receiver.close()
    report["ok"] = invariants_hold(report)
    return report


def clean_life(
    env: dict[str, str], log: Path, db: Path, feeds: int, generations: int
) -> dict[str, object]:
    """The last life: catch up, send what is due, stop on SIGTERM."""
    with Newswatch(["run"], env, log) as nw:
        try:
            wait_for(
                lambda: (
                    nw.logged("service started")  # a SIGTERM before its handler: -15
                    and generation_stored(db, feeds, generations - 1)
                    and not due_notifications(db)
                ),
                CATCH_UP_SECONDS,
                "the store to catch up and the outbox to drain",
            )
        except AssertionError as exc:
            print(f"final life: {exc}; its log ends:", file=sys.stderr)
            print("\n".join(nw.log_text().splitlines()[-20:]), file=sys.stderr)
        nw.signal(signal.SIGTERM)
        code = nw.wait(60)
        wait_for(lambda: not nw.family(), ORPHAN_SECONDS, "the children to exit")
        return {"final_exit_code": code, "final_fatal_logged": len(nw.logged("fatal error"))}


def invariants_hold(report: dict[str, object]) -> bool:
    zero = (
        "articles_missing",
        "articles_stored_twice",
        "articles_not_served",
        "keys_missing",
        "keys_unknown",
        "integrity_failures",
        "orphaned_lives",
        "fatal_errors_logged",
        "final_exit_code",
        "final_fatal_logged",
    )
    return all(report[name] == 0 for name in zero)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--feeds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run(args.minutes, args.feeds, args.seed)
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
