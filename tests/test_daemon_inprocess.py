"""The daemon in-process with the shipped in-memory source and capturing sink: readiness follows the sink's
health, HTTP endpoints answer, and a stop drains everything before returning 0."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import aiohttp
import pytest

from bridge import daemon as daemon_module
from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink, InMemorySource
from testbed.logcapture import capture_module_logs
from testbed.waiting import wait_for


async def test_readyz_turns_503_while_publishing_fails_and_recovers_and_stop_drains() -> None:
    """While the sink fails /readyz is 503 and nothing is acked; after recovery it is 200 again, every event
    is delivered once, and request_stop drains the reorder buffer and exits 0."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"max_delay_ms": 100}})
    src = InMemorySource(name="mem")
    sink = CapturingSink()
    sink.fail_next = 10**9  # failing until told otherwise
    daemon = Daemon(cfg, sources=[src], sink=sink)
    runner = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.http_port is not None and daemon.sink.ready, what="the daemon started")
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200
        for i in range(5):
            src.put(sagemaker_training_event(f"e{i}", "job", i))
        await wait_for(lambda: daemon.pipeline.publish_failing, what="publishing failing")
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 503 and (await r.json())["sink"] is False
        assert src.acks == []
        sink.fail_next = 0
        await wait_for(lambda: len(sink.routed) == 5 and src.acks, what="five events delivered and acked")
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{url}/metrics") as r:
            text = await r.text()
            assert 'bridge_events_out_total{route="all"} 5.0' in text
        pulled = src.batches_yielded
        src.put(sagemaker_training_event("last", "job", 99))
        # pulled, so now held in the reorder buffer: stop must drain it
        await wait_for(lambda: src.batches_yielded > pulled, what="the last event pulled", every=0.001)
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 10) == 0
    assert sorted(d.event.id for d in sink.routed) == sorted([f"e{i}" for i in range(5)] + ["last"])
    assert src.all_acked_once


async def _run_until_delivered_or_exit(daemon: Daemon, src: InMemorySource, sink: CapturingSink, n: int) -> int | None:
    """Run the daemon, feed ``n`` events; return its exit code if it exited within 10 s, else None (after a stop)."""
    runner = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.http_port is not None and daemon.sink.ready, what="the daemon started")
    for i in range(n):
        src.put(sagemaker_training_event(f"e{i}", "job", i))
    await wait_for(lambda: runner.done() or (len(sink.routed) == n and len(src.acks) == src.batches_yielded),
                   within=10, what="delivery or exit")
    if runner.done():
        return runner.result()
    daemon.request_stop()
    await asyncio.wait_for(runner, 10)
    return None


async def test_cancelled_error_raised_inside_the_sink_is_retried_not_fatal() -> None:
    """A CancelledError escaping the client library (the task itself was not cancelled) is a failed publish:
    retried until delivered, every event once and every batch acked, and the daemon keeps running."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False}})
    src = InMemorySource(name="mem")
    sink = CapturingSink()
    sink.fail_next, sink.fail_with = 3, asyncio.CancelledError
    daemon = Daemon(cfg, sources=[src], sink=sink)
    assert await _run_until_delivered_or_exit(daemon, src, sink, 5) is None  # still running: stopped by us
    assert sorted(d.event.id for d in sink.routed) == [f"e{i}" for i in range(5)]
    assert sink.publish_calls >= 4 and src.all_acked_once


class _RecordBug:
    """An encoder that fails when the delivery worker builds an outgoing record (a bug on the worker's path)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def record(self, *args: Any) -> Any:
        raise RuntimeError("bug while building a record")


class _SinkWithABuggyEncoder(CapturingSink):
    @property
    def encoder(self) -> Any:
        return _RecordBug(super().encoder)


async def test_a_dead_delivery_worker_stops_the_daemon_with_exit_1_instead_of_stalling() -> None:
    """If the delivery worker ends on an unexpected error, the daemon exits 1 (so the orchestrator restarts
    it) and acks nothing it did not deliver."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False}})
    src = InMemorySource(name="mem")
    sink = _SinkWithABuggyEncoder()
    daemon = Daemon(cfg, sources=[src], sink=sink)
    assert await _run_until_delivered_or_exit(daemon, src, sink, 5) == 1
    assert src.acks == [] and sink.records == []  # never delivered: redelivered after the restart (at least once)


class _SourceFailingOnce(InMemorySource):
    """Its first ``batches()`` call dies with a CancelledError raised inside it, as a client library may."""

    def __init__(self) -> None:
        super().__init__(name="mem")
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def batches(self):  # type: ignore[no-untyped-def,override]
        if self.starts == 1:
            raise asyncio.CancelledError()
        async for batch in super().batches():
            yield batch


async def test_a_source_dying_with_an_internal_cancelled_error_is_restarted() -> None:
    """The daemon treats a CancelledError out of a source (not a stop) as a failure: the source is restarted
    and its events are delivered, instead of its pump ending silently."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False}})
    src = _SourceFailingOnce()
    sink = CapturingSink()
    daemon = Daemon(cfg, sources=[src], sink=sink)
    assert await _run_until_delivered_or_exit(daemon, src, sink, 3) is None
    assert src.starts == 2
    assert sorted(d.event.id for d in sink.routed) == ["e0", "e1", "e2"] and src.all_acked_once


class _SourceAlwaysFailing(InMemorySource):
    """Connects fine, then fails as soon as it is read, every time."""

    async def batches(self):  # type: ignore[no-untyped-def,override]
        raise ConnectionError("broker went away")
        yield  # pragma: no cover


async def test_a_source_failing_right_after_connecting_backs_off_longer_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source that connects and then fails at once is restarted with growing delays (retry.CONNECT), not in a
    tight loop: its failures count across reconnects until a batch arrives."""
    logs = capture_module_logs(monkeypatch, daemon_module)
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False}})
    daemon = Daemon(cfg, sources=[_SourceAlwaysFailing(name="mem")], sink=CapturingSink())
    runner = asyncio.create_task(daemon.run())

    def failures() -> list[float]:
        return [e["retry_in"] for e in logs.events if e["event"] == "daemon.source_failed"]

    await wait_for(lambda: len(failures()) >= 3, within=30)
    daemon.request_stop()
    assert await asyncio.wait_for(runner, 10) == 0
    delays = failures()
    assert 0.4 <= delays[0] <= 0.5, delays
    assert all(later > earlier for earlier, later in pairwise(delays)), delays


class _LaggingSource(InMemorySource):
    """Reports a fixed backlog on one partition."""

    def lag(self) -> dict[str, int]:
        return {"p0": 7}


async def test_source_readiness_and_lag_are_read_through_the_source_contract() -> None:
    """/metrics exports each source's own ``lag()`` per partition and its ``ready`` as bridge_source_up; once a
    source stops being ready, /readyz answers 503 naming it."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False}})
    src = _LaggingSource(name="mem")
    daemon = Daemon(cfg, sources=[src], sink=CapturingSink())
    runner = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.http_port is not None and daemon.sink.ready and src.ready)
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as r:
            text = await r.text()
        assert 'bridge_consumer_lag{partition="p0",source="mem"} 7.0' in text
        assert 'bridge_source_up{source="mem"} 1.0' in text
        src.ready = False
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["sources"] == {"mem": False} and "source mem: not connected" in body["reasons"]
    daemon.request_stop()
    assert await asyncio.wait_for(runner, 10) == 0
