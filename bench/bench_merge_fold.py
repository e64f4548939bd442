"""What folding merged events' waiting notifications costs and saves (docs/decisions/0022).

    python bench/bench_merge_fold.py [--runs 5]

Replays the UCI headlines dev corpus (3,879 headlines, 121 event merges) through the whole
pipeline into SQLite with 60 one-word rules (the corpus's most frequent title words),
min_sources 1 and group_wait 10m, so every notification is still waiting when its event
merges: the most folding a replay can ask for. Modes, interleaved: the alerts engine as it
is, and with the fold switched off (the engine before issue 14: merges left the absorbed
events' waiting notifications alone). Prints process CPU seconds (wall time swings with the
load of a shared machine) and the notifications queued: how many are about merged-away
events and how many (rule, story) pairs got more than one.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import text

from newswatch.alerts.config import ChannelConfig, RuleConfig
from newswatch.alerts.stage import AlertStage as AlertEngine
from newswatch.config import FileConfig, Settings
from newswatch.log import configure_logging
from newswatch.pipeline import Pipeline
from newswatch.replay import replay
from newswatch.store.db import open_store
from shared_data import shared_corpus

COUNTS = {
    "queued": "SELECT COUNT(*) FROM notifications",
    "merged events": "SELECT COUNT(*) FROM events WHERE merged_into IS NOT NULL",
    "about merged-away events": "SELECT COUNT(*) FROM notifications WHERE event_id IN "
    "(SELECT id FROM events WHERE merged_into IS NOT NULL)",
    "(rule, story) notified twice or more": "SELECT COUNT(*) FROM (SELECT n.rule, "
    "coalesce(e.merged_into, e.id) AS story FROM notifications n JOIN events e "
    "ON e.id = n.event_id GROUP BY n.rule, story HAVING COUNT(*) > 1) AS twice",
}


def rules_for(path: Path, count: int) -> list[RuleConfig]:
    titles = (json.loads(line)["title"] for line in path.read_text().splitlines())
    words = Counter(w.lower() for title in titles for w in re.findall(r"[A-Za-z]{5,}", title))
    return [
        RuleConfig(name=f"r{i}", query=word, channels=["ops"], group_wait="10m")
        for i, (word, _) in enumerate(words.most_common(count))
    ]


def run(path: Path, rules: list[RuleConfig], fold: bool) -> tuple[float, dict[str, int]]:
    engine_class: type[AlertEngine] = AlertEngine
    if not fold:

        class engine_class(AlertEngine):  # type: ignore[no-redef]
            def _fold_outbox(self, session, gone, keep):  # type: ignore[no-untyped-def]
                return set()

    channel = ChannelConfig(name="ops", type="webhook", url="http://127.0.0.1:9/hook")
    config = FileConfig(channels=[channel], rules=rules)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        pipeline = Pipeline(store, config, Settings(_env_file=None))  # type: ignore[call-arg]
        pipeline.alert_engine = engine_class(rules, [channel], pipeline.settings)
        started = time.process_time()
        replay(store, pipeline, path)
        seconds = time.process_time() - started
        with store.connect() as conn:
            counts = {k: int(conn.execute(text(q)).scalar_one()) for k, q in COUNTS.items()}
        store.dispose()
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    path = shared_corpus("grouping/uci-headlines-dev.jsonl")
    rules = rules_for(path, 60)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    counts: dict[bool, dict[str, int]] = {}
    for _ in range(args.runs):
        for fold in (False, True):
            spent, counts[fold] = run(path, rules, fold)
            seconds[fold].append(spent)
    for fold in (False, True):
        s = seconds[fold]
        print(
            f"fold {'on ' if fold else 'off'}: CPU s min {min(s):.2f} median "
            f"{statistics.median(s):.2f} max {max(s):.2f}; "
            + "; ".join(f"{k} {v}" for k, v in counts[fold].items())
        )


if __name__ == "__main__":
    main()
