"""Reading a 10,000-source config file: our guarded loader against bare libyaml.

    python bench/bench_config.py [--sources 10000] [--rounds 7]

Modes, interleaved in each round (CPU time of this process, so other load on the machine
counts less; min / median / max over the rounds):
- baseline: `yaml.load(text, Loader=yaml.CSafeLoader)`, what a user of PyYAML would write;
  it refuses neither alias bombs nor deep nesting (libyaml's C composer recurses);
- safeyaml.load: ours, the events pre-scan (depth and alias budget) then the same C load;
- check_shape: the pre-scan alone (what the guard costs);
- before: what newswatch did before: `yaml.safe_load` (pure Python) and `yaml.compose`
  again for line numbers;
- parse_config_text: the whole config read, validation (pydantic) included.
The file is 10,000 sources of the shape the example config has (name, url, kind, interval,
tags), with a merge key on one source in ten.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import yaml

from newswatch import safeyaml
from newswatch.config import parse_config_text


def config_text(sources: int) -> str:
    lines = ["sources:"]
    for i in range(sources):
        lines += [f"  - name: source-{i}", f"    url: https://news{i % 997}.example/feed/{i}.xml"]
        if i == 0:
            lines.append("    <<: &slow {interval: 1h, tags: [archive]}")
        elif i % 10 == 0:
            lines.append("    <<: *slow")
        else:
            lines += ["    kind: feed", "    interval: 15m", "    tags: [world, politics]"]
    return "\n".join(lines) + "\n"


def before(text: str) -> object:
    data = yaml.safe_load(text)
    yaml.compose(text, Loader=yaml.SafeLoader)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    text = config_text(args.sources)
    modes: dict[str, Callable[[], object]] = {
        "baseline: yaml.load(CSafeLoader)": lambda: yaml.load(text, Loader=yaml.CSafeLoader),
        "safeyaml.load (ours)": lambda: safeyaml.load(text),
        "check_shape (the pre-scan alone)": lambda: safeyaml.check_shape(text),
        "before: safe_load + compose": lambda: before(text),
        "parse_config_text (with validation)": lambda: parse_config_text(text),
    }
    assert safeyaml.load(text) == yaml.load(text, Loader=yaml.CSafeLoader)
    print(f"{args.sources:,} sources, {len(text) / 1e6:.2f} MB, libyaml {yaml.__with_libyaml__}")
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, run in modes.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    base = statistics.median(times["baseline: yaml.load(CSafeLoader)"])
    print(f"{'mode':40} {'min':>8} {'median':>8} {'max':>8}  median/baseline")
    for name, values in times.items():
        low, mid, high = min(values), statistics.median(values), max(values)
        print(f"{name:40} {low:8.3f} {mid:8.3f} {high:8.3f}  {mid / base:.2f}x")


if __name__ == "__main__":
    main()
