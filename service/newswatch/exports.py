"""Exports of events and articles as CSV or JSON Lines, written a row at a time (the API
streams them, the CLI writes them to a file or stdout).

CSV cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a
carriage return) are prefixed with an apostrophe: a title from a feed must not become a
formula on an analyst's machine (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

FORMATS = ("csv", "jsonl")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Rows formatted before a chunk is handed on: fewer, larger writes.
ROWS_PER_CHUNK = 200

EVENT_COLUMNS = (
    "id",
    "title",
    "first_seen",
    "last_seen",
    "article_count",
    "source_count",
    "top_entities",
)
ARTICLE_COLUMNS = (
    "id",
    "title",
    "url",
    "published",
    "first_seen",
    "language",
    "language_source",
    "source_id",
    "source_name",
    "event_id",
    "duplicate_of",
    "summary",
)


def safe_cell(value: Any) -> str:
    """A CSV cell: times in ISO 8601, lists joined by "; ", formula-like text defused."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        value = "; ".join(str(v) for v in value)
    if isinstance(value, bool | int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _as_dict(row: Any) -> dict[str, Any]:
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    return dict(row)


def export_lines(rows: Iterable[Any], columns: tuple[str, ...], fmt: str) -> Iterator[str]:
    """`rows` (dataclasses or mappings) as CSV (a header, then a line a row) or JSON Lines,
    in chunks of text of ROWS_PER_CHUNK rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (formats: {', '.join(FORMATS)})")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(columns)
    for count, row in enumerate(rows, start=1):
        values = _as_dict(row)
        if fmt == "csv":
            writer.writerow([safe_cell(values.get(c)) for c in columns])
        else:
            record = {c: _json_value(values.get(c)) for c in columns}
            buffer.write(json.dumps(record, ensure_ascii=False) + "\n")
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
