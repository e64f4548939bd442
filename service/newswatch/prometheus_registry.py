"""Prometheus metrics of every stage, in one registry served at /metrics.

Stages import the metric they update from here; nothing else in this module runs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

FETCHES = Counter(
    "newswatch_fetches_total",
    "Fetches by source and outcome",
    ["source", "outcome"],
    registry=REGISTRY,
)
FETCH_SECONDS = Histogram(
    "newswatch_fetch_duration_seconds",
    "Duration of one fetch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
HOST_QUEUE_SECONDS = Histogram(
    "newswatch_host_queue_seconds",
    "Time a request waited for its host's turn (per-host politeness) before it was sent",
    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
HOST_QUEUE_WAITING = Gauge(
    "newswatch_host_queue_waiting",
    "Requests waiting for their host's turn now (all hosts)",
    registry=REGISTRY,
)
FETCH_BYTES = Counter("newswatch_fetch_bytes_total", "Body bytes fetched", registry=REGISTRY)
ARTICLES_STORED = Counter(
    "newswatch_articles_stored_total", "New articles stored", registry=REGISTRY
)
DUPLICATES_DROPPED = Counter(
    "newswatch_duplicates_total",
    "Entries recognised as an article already stored (by URL, GUID or content hash)",
    ["reason"],
    registry=REGISTRY,
)
EVENTS_OPENED = Counter("newswatch_events_opened_total", "Events opened", registry=REGISTRY)
EVENTS_MERGED = Counter("newswatch_events_merged_total", "Events merged", registry=REGISTRY)
EVENTS_SPLIT = Counter(
    "newswatch_events_split_total", "Events that proved to hold two and split", registry=REGISTRY
)
NEAR_DUPLICATES = Counter(
    "newswatch_near_duplicates_total",
    "Articles marked as near-duplicate copies",
    registry=REGISTRY,
)
RULE_MATCHES = Counter(
    "newswatch_rule_matches_total", "Rule matches on events", ["rule"], registry=REGISTRY
)
NOTIFICATIONS = Counter(
    "newswatch_notifications_total",
    "Delivery attempts by channel and outcome",
    ["channel", "outcome"],
    registry=REGISTRY,
)
PRUNED_ROWS = Counter(
    "newswatch_pruned_rows_total",
    "Rows deleted by retention (fetch log, page URLs, delivered notifications)",
    ["table"],
    registry=REGISTRY,
)
API_REJECTED = Counter(
    "newswatch_api_rejected_total",
    "API requests answered 503 because the API's share of the store was busy",
    registry=REGISTRY,
)
SOURCES_IN_ERROR = Gauge(
    "newswatch_sources_in_error", "Sources whose last fetch failed", registry=REGISTRY
)
SCHEDULER_LAST_TICK = Gauge(
    "newswatch_scheduler_last_tick_timestamp_seconds",
    "When the scheduler last ran a job",
    registry=REGISTRY,
)

# Computed from the store when /metrics is scraped (api/metrics.py), not updated by stages.
QUEUE_JOBS = Gauge(
    "newswatch_queue_jobs",
    "Jobs of the scaled mode's queue waiting (todo) or running (doing), by queue",
    ["queue", "status"],
    registry=REGISTRY,
)
SOURCES_DUE = Gauge(
    "newswatch_sources_due",
    "Enabled sources due for a poll and not claimed by a batch yet (the scheduler's backlog)",
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "newswatch_outbox_depth", "Notifications waiting in the outbox", registry=REGISTRY
)
OUTBOX_OLDEST_AGE = Gauge(
    "newswatch_outbox_oldest_pending_age_seconds",
    "Age of the oldest notification waiting in the outbox (0 when empty)",
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "newswatch_outbox_dead",
    "Notifications dead-lettered (retry budget spent or a permanent error), in the store",
    registry=REGISTRY,
)
NOT_MODIFIED_SHARE = Gauge(
    "newswatch_fetch_not_modified_ratio",
    "Share of the fetches of the last hour answered 304 Not Modified",
    registry=REGISTRY,
)
SOURCES_TOTAL = Gauge(
    "newswatch_sources", "Sources by state (enabled, disabled)", ["state"], registry=REGISTRY
)
# The scaled mode's grouper (`run --role group`, docs/decisions/0166), from the store too.
GROUPING_LAG_SECONDS = Gauge(
    "newswatch_grouping_lag_seconds",
    "Age of the oldest article waiting for the grouper (0 when none; scaled mode)",
    registry=REGISTRY,
)
GROUPING_LAG_ARTICLES = Gauge(
    "newswatch_grouping_lag_articles",
    "Articles waiting for the grouper (scaled mode)",
    registry=REGISTRY,
)
GROUPER_LEADER = Gauge(
    "newswatch_grouper_leader",
    "The grouper holding the grouping lock (host:pid) and its epoch, as the value",
    ["holder"],
    registry=REGISTRY,
)
GROUPER_HEARTBEAT_AGE = Gauge(
    "newswatch_grouper_heartbeat_age_seconds",
    "Seconds since the leading grouper last wrote its lease (a batch or an idle heartbeat)",
    registry=REGISTRY,
)
