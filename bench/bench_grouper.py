"""The scaled grouper (`newswatch run --role group`, Postgres): grouping lag at a steady
arrival rate, and failover time after `kill -9` of the leader at a large window.

    python bench/bench_grouper.py [--window 150000] [--rate 50] [--seconds 30] [--rounds 5]
                                  [--words 120] [--rebuild-template] [--build-only]

1. The store: `--window` synthetic articles (bench/synthetic_news.py, `--words` words each)
   grouped by the single-process pipeline, published over 72 hours (150,000 = 2,083 an hour:
   a 50,000-a-day deployment), all first seen within the grouping window. Built once into a
   template database (`nwbench_grouper_<window>_<words>w_<schema revision>`) and copied with
   `CREATE DATABASE … TEMPLATE` for each run: the fill costs tens of minutes on a loaded
   machine, the copy seconds. A template older than 60 hours is built again (its articles
   would fall out of the 72-hour window the groupers restore).
2. `1 + --spares` real grouper processes start on the copy; each restores that window.
3. Each round: a feeder stores articles as fetch workers do (no grouping, one transaction and
   one NOTIFY newswatch_articles per batch, a batch every 0.1 s) at `--rate` per second for
   `--seconds`; then the leader gets SIGKILL and the time until a standby's first grouped
   batch is taken (articles keep coming); a fresh grouper is started. Its build (restore of
   the leader's window from the store + replay of the log since) runs on while the next
   rounds go on, a ready standby always there: on a machine shared with others, waiting for
   each build alone would cost the run hours (its wall time is then an upper bound; its CPU
   time, from /proc, is the figure the load moves least).

Figures, each labelled in the output:
- lag: seconds from an article's insert (its first_seen) to the commit of the grouper's batch
  that grouped it (the batch's log row), p50/p99 per round;
- its floor, in the same rounds on the same articles: a bare listener process (psycopg, no
  newswatch code) LISTENs on the same channel, reads the new articles' ids and writes one row
  per wake-up in a transaction of its own: the INSERT + NOTIFY + read + write round trip with
  no grouping. lag minus floor is what grouping adds;
- failover: SIGKILL of the leader -> the standby's first batch's log row;
- its alternative: a fresh grouper's state build (restore of the window from the store + replay
  of the log since), what a takeover without a replaying standby would wait (wall and CPU
  seconds), and what the fresh standby of each round spends;
- peak RSS (VmHWM) of the leader and of the standby just before each kill.

Needs NEWSWATCH_BENCH_DATABASE_URL or NEWSWATCH_TEST_DATABASE_URL (a Postgres server where the
user may CREATE DATABASE); the run's copy (`nwbench_grouper_run_<pid>`) is dropped at the end,
the template kept (`--rebuild-template` builds it again).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from newswatch.config import FileConfig, Settings
from newswatch.pipeline import Pipeline
from newswatch.shared_types import ParsedEntry
from newswatch.store.articles import ensure_sources, store_batch
from newswatch.store.db import make_engine, normalise_url, schema_head, session_scope, upgrade
from newswatch.store.grouper_lease import ARTICLES_CHANNEL, notify
from synthetic_news import stream

FILL_CHUNK = 500
FEED_TICK = 0.1  # seconds between the feeder's batches
TEMPLATE_MAX_AGE_HOURS = 60  # the groupers restore 72 hours of first_seen
BARE_TABLE = "bench_bare_batches"
UNPLACED = "SELECT count(*) FROM articles WHERE event_id IS NULL"


def _entries(records: list[dict[str, Any]]) -> list[tuple[str, ParsedEntry]]:
    return [
        (
            str(r["source"]),
            ParsedEntry(
                url=str(r["url"]),
                guid=str(r["id"]),
                title=str(r["title"]),
                text=str(r["text"]),
                published=datetime.fromisoformat(str(r["published"]).replace("Z", "+00:00")),
            ),
        )
        for r in records
    ]


# --- the store: a template database, copied per run ------------------------------------
def database_url(base: str, database: str) -> str:
    return make_url(normalise_url(base)).set(database=database).render_as_string(False)


def fill(engine: Engine, entries: list[tuple[str, ParsedEntry]]) -> float:
    pipeline = Pipeline(engine, FileConfig(), Settings(), alerts=False)
    started = time.perf_counter()
    for start in range(0, len(entries), FILL_CHUNK):
        chunk = entries[start : start + FILL_CHUNK]
        with session_scope(engine) as session:
            sources = ensure_sources(session, [n for n, _e in chunk], origin="config")
            pipeline.ingest_jobs(session, [(sources[n], [e]) for n, e in chunk])
        if (start // FILL_CHUNK) % 20 == 19:
            done = start + len(chunk)
            print(f"  filled {done} in {time.perf_counter() - started:.0f} s", flush=True)
    return time.perf_counter() - started


def _databases(admin: Engine) -> set[str]:
    with admin.connect() as conn:
        return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())


def _template_age_hours(base: str, name: str) -> float:
    engine = create_engine(database_url(base, name))
    try:
        with engine.connect() as conn:
            built = conn.execute(text("SELECT built_at FROM bench_template")).scalar_one()
    finally:
        engine.dispose()
    return (datetime.now(UTC) - built).total_seconds() / 3600


def ensure_template(
    base: str,
    admin: Engine,
    window: int,
    words: int,
    entries: list[tuple[str, ParsedEntry]],
    rebuild: bool,
) -> str:
    """The template database holding the filled window (built here if missing or stale)."""
    name = f"nwbench_grouper_{window}_{words}w_{schema_head()}"
    existing = _databases(admin)
    if name in existing and not rebuild:
        age = _template_age_hours(base, name)
        if age < TEMPLATE_MAX_AGE_HOURS:
            print(f"template {name}: built {age:.1f} h ago, reused", flush=True)
            return name
    building = f"{name}_building"
    with admin.connect() as conn:
        for db in (building, name):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
        conn.execute(text(f'CREATE DATABASE "{building}"'))
    engine = make_engine(database_url(base, building))
    upgrade(engine)
    filled = fill(engine, entries[:window])
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_template (built_at timestamptz NOT NULL)"))
        conn.execute(text("INSERT INTO bench_template VALUES (now())"))
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    with admin.connect() as conn:  # the name only once it is complete
        conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
    print(f"template {name}: {window} articles through the pipeline in {filled:.0f} s", flush=True)
    return name


def copy_template(admin: Engine, template: str, copy: str) -> float:
    started = time.perf_counter()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}"'))
        conn.execute(text(f'CREATE DATABASE "{copy}" TEMPLATE "{template}" STRATEGY FILE_COPY'))
    return time.perf_counter() - started


# --- the arrivals ---------------------------------------------------------------------
def store_as_fetch_worker(engine: Engine, chunk: list[tuple[str, ParsedEntry]]) -> None:
    with session_scope(engine) as session:
        sources = ensure_sources(session, [n for n, _e in chunk], origin="config")
        store_batch(session, [(sources[n], e) for n, e in chunk])
        notify(session, ARTICLES_CHANNEL)


class Feeder(threading.Thread):
    """Stores `rate` articles a second, a batch every FEED_TICK, until stopped."""

    def __init__(self, engine: Engine, entries: list[tuple[str, ParsedEntry]], rate: float):
        super().__init__(daemon=True)
        self.engine, self.entries, self.rate = engine, entries, rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and self.sent < len(self.entries):
            due = int((time.monotonic() - started) * self.rate)
            if due > self.sent:
                store_as_fetch_worker(self.engine, self.entries[self.sent : due])
                self.sent = due
            self.stop.wait(FEED_TICK)


# --- the processes --------------------------------------------------------------------
class GrouperProcess:
    """A `newswatch run --role group` process; `watch()` notes the CPU it had used when it
    logged `grouper.standby` (start-up done, build begins) and `grouper.state_built`."""

    def __init__(self, url: str, log_path: Path):
        env = dict(os.environ) | {"DATABASE_URL": url, "NEWSWATCH_LOG_FORMAT": "json"}
        env.pop("NEWSWATCH_CONFIG", None)
        self.log_path = log_path
        self.cpu_at: dict[str, float] = {}
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newswatch", "run", "--role", "group"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def logged(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                out.append(json.loads(line))
        return out

    def watch(self) -> None:
        for event in ("grouper.standby", "grouper.state_built"):
            if event not in self.cpu_at and self.logged(event):
                self.cpu_at[event] = process_cpu(self.proc.pid)

    @property
    def built(self) -> dict[str, Any] | None:
        found = self.logged("grouper.state_built")
        return found[0] if found else None

    def build_cpu(self) -> float:
        """CPU seconds of its state build (between the two log lines, to 0.1 s)."""
        return self.cpu_at["grouper.state_built"] - self.cpu_at["grouper.standby"]

    def peak_rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmHWM") / 1024

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


class Watcher(threading.Thread):
    """Polls the groupers' logs every 0.1 s for `GrouperProcess.watch`."""

    def __init__(self, groupers: list[GrouperProcess]):
        super().__init__(daemon=True)
        self.groupers = groupers
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for g in list(self.groupers):
                g.watch()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used; nan once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def bare_listener(url: str) -> None:
    """The floor of the lag: woken by the fetch workers' NOTIFY, read the new articles' ids,
    write one row naming them, commit; no grouping (run as a process of its own)."""
    import psycopg

    libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as listen, psycopg.connect(libpq) as conn:
        listen.execute(f"LISTEN {ARTICLES_CHANNEL}")
        last = conn.execute("SELECT coalesce(max(id), 0) FROM articles").fetchone()[0]  # type: ignore[index]
        conn.commit()
        print("ready", flush=True)
        while True:
            for _note in listen.notifies(timeout=5.0, stop_after=1):
                pass
            for _note in listen.notifies(timeout=0.0):
                pass
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM articles WHERE id > %s ORDER BY id", (last,)
                ).fetchall()
            ]
            if ids:
                conn.execute(
                    f"INSERT INTO {BARE_TABLE} (created_at, article_ids) VALUES (%s, %s)",
                    (datetime.now(UTC), json.dumps(ids)),
                )
                last = ids[-1]
            conn.commit()


def start_bare_listener(url: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--bare-listener", url],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise SystemExit(f"the bare listener did not start: see {log_path}")
    return proc


# --- measuring ------------------------------------------------------------------------
def _scalar(engine: Engine, query: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(query), params).scalar()


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def lags_since(engine: Engine, table: str, first_id: int) -> list[float]:
    """Seconds from each article's insert (first_seen) to the commit of the row in `table`
    (a grouper's batch log, or the bare listener's) that names it."""
    query = text(
        f"SELECT extract(epoch FROM b.created_at - a.first_seen) FROM {table} b "
        "CROSS JOIN LATERAL json_array_elements_text(b.article_ids) AS x(id) "
        "JOIN articles a ON a.id = x.id::bigint WHERE a.id >= :first"
    )
    with engine.connect() as conn:
        return sorted(float(v) for v in conn.execute(query, {"first": first_id}).scalars())


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: min {min(values):.3f} / median {statistics.median(values):.3f} / "
        f"max {max(values):.3f}"
    )


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


class Results:
    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.series.setdefault(name, []).append(value)

    def print(self) -> None:
        for name, values in self.series.items():
            print(summary(name, values))


def run_rounds(
    engine: Engine,
    url: str,
    logs: Path,
    entries: list[tuple[str, ParsedEntry]],
    args: argparse.Namespace,
) -> Results:
    """`1 + args.spares` groupers at first; each round kills the leader and (`--fresh`)
    starts a fresh grouper, whose build runs while the next rounds go on (a ready standby is
    always there): on a shared machine its build would otherwise be waited for alone, round
    after round."""
    results = Results()
    groupers = [GrouperProcess(url, logs / f"g{n}.log") for n in range(1 + args.spares)]
    all_started = list(groupers)
    watcher = Watcher(all_started)
    watcher.start()
    bare = start_bare_listener(url, logs / "bare.log")
    feeder: Feeder | None = None
    try:
        wait(lambda: all(g.built for g in groupers), 7200, "the first states")
        print(
            f"first {len(groupers)} groupers built their state at once: "
            + ", ".join(f"{b['restored']} restored in {b['seconds']} s" for b in _builds(groupers))
            + f" (load {load()})",
            flush=True,
        )
        per_round = int(args.rate * args.seconds * 1.5)
        next_entry = args.window
        for round_no in range(args.rounds):
            wait(lambda: _lease(engine) is not None, 600, "a leader")
            leader = _leader(engine, groupers)
            wait(lambda ld=leader: any(g.built for g in groupers if g is not ld), 7200, "a standby")
            standbys = [g for g in groupers if g is not leader and g.built]
            first_id = int(_scalar(engine, "SELECT coalesce(max(id), 0) + 1 FROM articles"))
            feeder = Feeder(engine, entries[next_entry : next_entry + per_round], args.rate)
            feeder.start()
            time.sleep(args.seconds)  # the steady state the lag is measured over
            epoch, _holder = _lease(engine)  # type: ignore[misc]
            results.add("leader peak RSS MB", leader.peak_rss_mb())
            results.add("standby peak RSS MB", max(g.peak_rss_mb() for g in standbys))
            load_at_kill = load()
            killed_at = time.time()
            leader.kill()
            wait(
                lambda e=epoch: _scalar(
                    engine, "SELECT count(*) FROM grouper_batches WHERE epoch > :e", e=e
                ),
                600,
                "the standby's first batch",
            )
            first = _scalar(
                engine,
                "SELECT extract(epoch FROM min(created_at)) FROM grouper_batches WHERE epoch > :e",
                e=epoch,
            )
            results.add("failover s", float(first) - killed_at)
            feeder.stop.set()
            feeder.join()
            next_entry += feeder.sent
            groupers.remove(leader)
            if args.fresh:
                fresh = GrouperProcess(url, logs / f"g{len(all_started)}.log")
                groupers.append(fresh)
                all_started.append(fresh)
            wait(lambda: _scalar(engine, UNPLACED) == 0, 600, "the drain")
            lag = lags_since(engine, "grouper_batches", first_id)
            floor = lags_since(engine, BARE_TABLE, first_id)
            results.add("grouper lag p50 s", pct(lag, 0.5))
            results.add("grouper lag p99 s (incl. the failover)", pct(lag, 0.99))
            results.add("floor (bare INSERT+NOTIFY round trip) p50 s", pct(floor, 0.5))
            results.add("floor p99 s", pct(floor, 0.99))
            new_leader = _leader(engine, groupers)
            catch_up = new_leader.logged("grouper.leading")
            building = sum(1 for g in groupers if not g.built)
            print(
                f"round {round_no + 1} (load at the kill {load_at_kill}; {len(standbys)} ready "
                f"standby, {building} grouper building): {len(lag)} articles; lag p50 "
                f"{pct(lag, 0.5):.3f} p99 {pct(lag, 0.99):.3f} s, floor p50 {pct(floor, 0.5):.3f} "
                f"p99 {pct(floor, 0.99):.3f} s; failover {results.series['failover s'][-1]:.3f} s "
                f"(catch-up {catch_up[-1]['catch_up_seconds'] if catch_up else '?'} s); peak "
                f"RSS leader {results.series['leader peak RSS MB'][-1]:.0f} MB, standby "
                f"{results.series['standby peak RSS MB'][-1]:.0f} MB",
                flush=True,
            )
        wait(lambda: all(g.built for g in groupers), 7200, "the fresh groupers' states")
        time.sleep(0.3)  # the watcher's last look
        for g in all_started:
            built = g.built
            if built is None or "grouper.state_built" not in g.cpu_at:
                continue
            first_ones = all_started[: 1 + args.spares]
            kind = f"first ({len(first_ones)} at once)" if g in first_ones else "fresh"
            print(
                f"  state build, {kind} grouper {g.proc.pid}: {built['restored']} restored + "
                f"{built['replayed']} replayed in {built['seconds']} s wall, "
                f"{g.build_cpu():.1f} s CPU",
                flush=True,
            )
            results.add(f"state build of a {kind} grouper s (wall)", float(built["seconds"]))
            results.add(f"state build of a {kind} grouper s (CPU)", g.build_cpu())
    finally:
        watcher.stop.set()
        if feeder is not None:
            feeder.stop.set()
        for g in groupers:
            g.kill()
        bare.kill()
        bare.wait(30)
    return results


def _builds(groupers: list[GrouperProcess]) -> list[dict[str, Any]]:
    return [b for b in (g.built for g in groupers) if b is not None]


def _lease(engine: Engine) -> tuple[int, str] | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT epoch, holder FROM grouper_lease")).first()
    return None if row is None else (int(row[0]), str(row[1]))


def _leader(engine: Engine, groupers: list[GrouperProcess]) -> GrouperProcess:
    lease = _lease(engine)
    assert lease is not None
    return next(g for g in groupers if str(g.proc.pid) == lease[1].rsplit(":", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--window", type=int, default=150_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument(
        "--spares", type=int, default=2, help="standbys besides the first leader (>= 1)"
    )
    parser.add_argument(
        "--fresh",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start a fresh grouper after each kill (--no-fresh: the first ones must do, "
        "--spares >= --rounds)",
    )
    parser.add_argument("--rebuild-template", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="build the template, stop")
    parser.add_argument("--bare-listener", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.fresh and args.spares < args.rounds:
        parser.error("--no-fresh needs --spares >= --rounds (a standby for every kill)")
    if args.bare_listener:
        bare_listener(args.bare_listener)
        return
    base = os.environ.get("NEWSWATCH_BENCH_DATABASE_URL") or os.environ.get(
        "NEWSWATCH_TEST_DATABASE_URL"
    )
    if not base:
        raise SystemExit("set NEWSWATCH_BENCH_DATABASE_URL to a Postgres database")
    print(f"load average at start {load()}", flush=True)
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    per_round = int(args.rate * args.seconds * 1.5)
    records = list(
        stream(args.window + per_round * args.rounds, per_hour=args.window // 72, words=args.words)
    )
    entries = _entries(records)
    template = ensure_template(base, admin, args.window, args.words, entries, args.rebuild_template)
    if args.build_only:
        admin.dispose()
        return
    copy = f"nwbench_grouper_run_{os.getpid()}"
    copied = copy_template(admin, template, copy)
    print(f"copied the template in {copied:.1f} s", flush=True)
    url = database_url(base, copy)
    logs = Path(f"/tmp/{copy}")
    logs.mkdir(exist_ok=True)
    try:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE {BARE_TABLE} (created_at timestamptz NOT NULL,"
                    " article_ids json NOT NULL)"
                )
            )
        results = run_rounds(engine, url, logs, entries, args)
        window_now = _scalar(engine, "SELECT count(*) FROM articles")
        engine.dispose()
        print(
            f"window {args.window} (store now {window_now} articles), {args.words} words "
            f"each; {args.rate}/s for {args.seconds} s a round; {args.rounds} rounds"
        )
        results.print()
        print(f"load average at the end {load()}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
