"""The parts that join the service and its API process (api/process.py, status_board.py),
in one process: the status board seen through a second mapping of its descriptor, the
metrics channel over a real socket pair, and the merge of the two expositions."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from newswatch.api.metrics import merge_expositions
from newswatch.api.process import ChildLink, ParentMetrics, serve_metrics
from newswatch.status_board import BoardStatus, StatusBoard


def test_the_board_shows_what_the_service_published() -> None:
    board = StatusBoard.create()
    seen = BoardStatus(StatusBoard(os.dup(board.fd), writable=False))
    try:
        assert (seen.scheduler_running, seen.last_tick) == (False, None)
        board.publish(running=True, last_tick=1234.5)
        assert (seen.scheduler_running, seen.last_tick) == (True, 1234.5)
        board.publish(running=False, last_tick=1300.25)
        assert (seen.scheduler_running, seen.last_tick) == (False, 1300.25)
    finally:
        seen.board.close()
        board.close()


def test_a_read_only_board_refuses_writes() -> None:
    board = StatusBoard.create()
    reader = StatusBoard(os.dup(board.fd), writable=False)
    try:
        with pytest.raises(TypeError):
            reader.publish(running=True, last_tick=1.0)
    finally:
        reader.close()
        board.close()


def test_the_child_link_round_trips_and_names_a_bad_value() -> None:
    link = ChildLink(10, 3, 4, 5, 6)
    assert ChildLink.decode(link.encode()) == link
    with pytest.raises(ValueError, match="--api-child '1,2'"):
        ChildLink.decode("1,2")


@pytest.fixture
def channel() -> Iterator[ParentMetrics]:
    """serve_metrics on an event loop in a thread (the service), ParentMetrics on the other
    end of a socket pair (the API process)."""
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served = asyncio.run_coroutine_threadsafe(serve_metrics(ours), loop)
    metrics = ParentMetrics(theirs.detach(), timeout=10)
    try:
        yield metrics
    finally:
        metrics._sock.close()
        served.result(10)  # serve_metrics returns once the API's end closes
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_api_process_gets_the_service_metrics(channel: ParentMetrics) -> None:
    first = channel.fetch()
    assert b"# HELP newswatch_articles_stored_total" in first
    second = channel.fetch()
    assert b"# HELP newswatch_articles_stored_total" in second


def test_a_late_answer_is_skipped_by_the_next_request() -> None:
    ours, theirs = socket.socketpair()
    metrics = ParentMetrics(theirs.detach(), timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            metrics.fetch()  # nobody answers request 1
        # Request 1's answer arrives late, split across reads; then request 2's.
        late = (1).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"late"
        ours.sendall(late[:6])
        with pytest.raises(TimeoutError):
            metrics.fetch()  # request 2: only half of answer 1 so far
        assert ours.recv(8) == (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
        ours.sendall(late[6:] + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"old")
        ours.sendall((3).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"fresh")
        assert metrics.fetch() == b"fresh"
    finally:
        metrics._sock.close()
        ours.close()


def test_the_merge_takes_the_api_s_families_for_what_it_owns() -> None:
    service, api = CollectorRegistry(), CollectorRegistry()
    for registry, stored, in_error, rejected in ((service, 7, 3, 0), (api, 0, 5, 2)):
        Counter("stored", "articles", registry=registry).inc(stored)
        Gauge("in_error", "sources", registry=registry).set(in_error)
        Counter("rejected", "503s", registry=registry).inc(rejected)
    merged = merge_expositions(
        generate_latest(service),
        generate_latest(api),
        {"in_error", "rejected_total", "rejected_created"},
    ).decode()
    samples = {
        line.split()[0]: float(line.split()[1])
        for line in merged.splitlines()
        if line and not line.startswith("#") and "_created" not in line
    }
    assert samples == {"stored_total": 7.0, "in_error": 5.0, "rejected_total": 2.0}
    assert merged.count("# HELP in_error") == 1
