"""Schemathesis against the app's own OpenAPI spec, served by a real uvicorn on 127.0.0.1:
no generated request, valid or not, gets a 5xx, and every answer matches the spec.

Schemathesis's pytest plugin does not work with pytest 9 (it reads Function._nodeid), so the
test drives its Hypothesis strategies directly: one bounded run per operation and mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy import Engine

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.shared_types import FetchOutcome
from newswatch.store.columns import utcnow
from tests.api_support import (
    Running,
    add_articles,
    hours_ago,
    load_corpus,
    record_fetch,
    replay_corpus,
    running,
)

MAX_EXAMPLES = 40  # per operation and mode; bounded so the suite stays quick
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def api(engine: Engine) -> Iterator[Running]:
    add_articles(engine, "alpha", ["Quake hits coast", "Budget vote"], hours_ago(3))
    add_articles(engine, "beta", ["Storm update"], hours_ago(1), also_seen_at=("alpha",))
    record_fetch(engine, "alpha", FetchOutcome.NOT_MODIFIED, status=304, error=None)
    record_fetch(engine, "beta", FetchOutcome.HTTP_ERROR, status=503, error="HTTP 503")
    replay_corpus(engine, load_corpus()[:30], end=utcnow())  # events, so their paths run
    with running(create_app(engine, Settings(_env_file=None))) as srv:  # type: ignore[call-arg]
        yield srv


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str) -> int:
    calls = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same inputs every run: a failure can be reproduced
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(base_url=base_url, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # No invalid request exists for an operation without parameters (/healthz).
        if mode is GenerationMode.POSITIVE:
            raise
    return calls


def test_no_server_errors_for_generated_requests(api: Running) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    expected = {"/api/articles", "/api/events", "/api/events/{event_id}", "/readyz", "/metrics"}
    assert expected <= paths
    total = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            total += fuzz(operation, mode, api.base_url)
    assert total >= len(operations)  # every operation was exercised
