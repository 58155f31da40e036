"""The pipeline core: acks after delivery exactly once, retries, dedup, reorder holding, late policies."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from bridge.envelope import CloudEvent
from bridge.model import PublishError, RawMessage, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import Route, RouteFilter, Router
from bridge.retry import Backoff
from bridge.testing.events import make_event
from bridge.testing.memory import CapturingSink, InMemorySource


class BadInput(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fake_normalize(msg: RawMessage) -> tuple[list[CloudEvent], list[Exception]]:
    try:
        doc = orjson.loads(msg.body)
    except orjson.JSONDecodeError:
        return [], [BadInput("malformed JSON")]
    return [make_event(doc["id"], doc.get("subject", "s"), doc.get("seq", "0"), status=doc.get("status"))], []


class StatusIs:
    def __init__(self, status: str) -> None:
        self.status = status

    def matches(self, event: Any) -> bool:
        return bool(event.get("status") == self.status)


def make_pipeline(
    sink: CapturingSink,
    *,
    reorder: ReorderBuffer | None = None,
    dedup: bool = True,
    late_policy: Any = "emit",
    routes: list[Route] | None = None,
) -> Pipeline:
    return Pipeline(
        Router(routes or [Route("all", "ml.events")]),
        sink,
        dedup=Deduplicator(MemoryDedupStore()) if dedup else None,
        reorder=reorder,
        late_policy=late_policy,
        normalize=fake_normalize,
        retry_backoff=Backoff(0.001, 0.01),
    )


async def run_source(pipeline: Pipeline, src: InMemorySource) -> None:
    src.close_input()
    async for batch in src.batches():
        await pipeline.submit(batch)
    await pipeline.flush()


async def test_every_batch_is_acked_exactly_once_after_delivery() -> None:
    """Each source batch is acked once, and only after its events reached the sink."""
    sink = CapturingSink()
    src = InMemorySource([{"id": str(i), "subject": f"s{i % 7}"} for i in range(250)], batch_size=50)
    p = make_pipeline(sink)
    await run_source(p, src)
    assert src.all_acked_once and src.batches_yielded == 5
    assert sorted(int(d.event.id) for d in sink.routed) == list(range(250))


async def test_no_ack_while_the_sink_fails_and_delivery_after_retries() -> None:
    """A failing sink is retried; the batch is acked only after the retry succeeded, nothing is lost."""
    sink = CapturingSink()
    sink.fail_next = 3
    acked = asyncio.Event()

    async def ack() -> None:
        assert len(sink.routed) == 1  # delivered before the ack
        acked.set()

    p = make_pipeline(sink)
    await p.submit(SourceBatch([RawMessage(b'{"id":"1"}')], ack, "t"))
    await p.flush()
    assert acked.is_set() and sink.publish_calls == 4


async def test_batches_given_up_at_shutdown_are_nacked_not_acked() -> None:
    """Closing while the sink never recovers gives each undelivered batch back to its source (nack) instead of
    acking it, and so are batches pulled but never submitted; a delivered batch is acked, never nacked."""
    sink = CapturingSink()
    calls: list[str] = []

    def batch(name: str) -> SourceBatch:
        async def ack() -> None:
            calls.append(f"ack {name}")

        async def nack() -> None:
            calls.append(f"nack {name}")

        return SourceBatch([RawMessage(orjson.dumps({"id": name}))], ack, "t", nack=nack)

    p = make_pipeline(sink)
    await p.submit(batch("delivered"))
    await p.wait_idle()
    sink.fail_next = 10**9
    await p.submit(batch("stuck"))
    await p.close(grace=0.2, unadmitted=[batch("queued")])
    assert sorted(calls) == ["ack delivered", "nack queued", "nack stuck"]


async def test_duplicates_are_acked_but_not_republished() -> None:
    """A duplicate id is dropped and counted, and its batch is still acked."""
    sink = CapturingSink()
    src = InMemorySource([{"id": "1"}, {"id": "1"}, {"id": "2"}], batch_size=1)
    p = make_pipeline(sink)
    await run_source(p, src)
    assert [d.event.id for d in sink.routed] == ["1", "2"]
    assert src.all_acked_once and src.batches_yielded == 3
    assert p.metrics.registry.get_sample_value("bridge_duplicates_dropped_total", {"source": "memory"}) == 1


async def test_two_copies_in_one_batch_of_an_already_delivered_event_do_not_hold_the_ack() -> None:
    """Regression (found by the benchmark: a partition's commit stalled for good): when an event was delivered
    earlier and two more copies arrive in one batch, both are dropped as seen and the batch is acked."""
    sink = CapturingSink()
    src = InMemorySource([{"id": "1"}], batch_size=10)
    p = make_pipeline(sink)
    src.close_input()
    async for batch in src.batches():
        await p.submit(batch)
    await p.flush()
    src2 = InMemorySource([{"id": "1"}, {"id": "2"}, {"id": "1"}], batch_size=10)
    await asyncio.wait_for(run_source(p, src2), 5)
    assert [d.event.id for d in sink.routed] == ["1", "2"]
    assert src.all_acked_once and src2.all_acked_once and src2.batches_yielded == 1
    assert p.settlement.waiting == 0  # no copy left waiting for an original


async def test_events_held_in_the_reorder_buffer_hold_back_their_ack() -> None:
    """A batch whose event waits in the reorder buffer is not acked until that event is published."""
    sink = CapturingSink()
    acks: list[str] = []

    async def ack() -> None:
        acks.append("b1")

    p = make_pipeline(sink, reorder=ReorderBuffer(max_delay=0.2))
    await p.submit(SourceBatch([RawMessage(b'{"id":"1","seq":"2"}')], ack, "t"))
    await asyncio.sleep(0.05)
    assert acks == [] and sink.routed == []
    await asyncio.sleep(0.2)
    p.tick()
    await p.wait_idle()
    assert acks == ["b1"] and len(sink.routed) == 1


async def test_reorder_restores_sequence_order_per_subject() -> None:
    """Events of one subject submitted out of order are published in sequence order."""
    sink = CapturingSink()
    src = InMemorySource(
        [{"id": str(i), "subject": "x", "seq": f"{s:02d}"} for i, s in enumerate([5, 1, 4, 2, 3])], batch_size=2
    )
    p = make_pipeline(sink, reorder=ReorderBuffer(max_delay=5.0))
    await run_source(p, src)
    assert [d.event.sequence for d in sink.routed] == ["01", "02", "03", "04", "05"]


async def test_late_policies_emit_drop_and_deadletter() -> None:
    """A late event is emitted marked late=true, dropped and counted, or dead-lettered, per policy."""
    for policy in ("emit", "drop", "deadletter"):
        sink = CapturingSink()
        p = make_pipeline(sink, reorder=ReorderBuffer(max_delay=0.0), late_policy=policy)
        await p.submit(SourceBatch([RawMessage(b'{"id":"1","subject":"x","seq":"5"}')], None, "t"))
        p.tick()
        await p.submit(SourceBatch([RawMessage(b'{"id":"2","subject":"x","seq":"3"}')], None, "t"))
        await p.flush()
        if policy == "emit":
            assert [(d.event.id, d.event.late) for d in sink.routed] == [("1", False), ("2", True)]
        elif policy == "drop":
            assert [d.event.id for d in sink.routed] == ["1"] and sink.dead == []
        else:
            assert [d.event.id for d in sink.routed] == ["1"]
            assert len(sink.dead) == 1 and "late event" in sink.dead[0].reason
        assert p.metrics.registry.get_sample_value("bridge_late_events_total", {"policy": policy}) == 1


async def test_bad_input_goes_to_deadletter_with_reason_and_batch_is_acked() -> None:
    """Malformed input is published to the dead-letter topic with its reason; the batch is then acked."""
    sink = CapturingSink()
    src = InMemorySource(["{not json", {"id": "1"}], batch_size=10)
    p = make_pipeline(sink)
    await run_source(p, src)
    assert [(d.topic, d.reason, d.raw) for d in sink.dead] == [("ml.events.deadletter", "malformed JSON", b"{not json")]
    assert len(sink.routed) == 1 and src.all_acked_once


async def test_event_matching_several_routes_goes_to_each_and_unrouted_is_acked() -> None:
    """One event can match several routes; an event matching none is dropped yet its batch acked."""
    sink = CapturingSink()
    routes = [Route("all", "t.all"), Route("failed", "t.failed", (RouteFilter(StatusIs("failed")),))]
    src = InMemorySource([{"id": "1", "status": "failed"}, {"id": "2", "status": "running"}])
    p = make_pipeline(sink, routes=routes)
    await run_source(p, src)
    assert sorted((d.topic, d.event.id) for d in sink.routed) == [("t.all", "1"), ("t.all", "2"), ("t.failed", "1")]
    only_failed = CapturingSink()
    src2 = InMemorySource([{"id": "2", "status": "running"}])
    p2 = make_pipeline(only_failed, routes=[routes[1]])
    await run_source(p2, src2)
    assert only_failed.routed == [] and src2.all_acked_once


async def test_duplicate_of_an_in_flight_event_is_acked_only_after_the_original_is_delivered() -> None:
    """A copy dropped because its original is still in flight (e.g. redelivered after a rebalance) keeps its
    position until the original is published, so a crash in between cannot lose the event."""
    sink = CapturingSink()
    acks: list[str] = []

    def acker(name: str) -> Any:
        async def ack() -> None:
            acks.append(name)

        return ack

    p = make_pipeline(sink, reorder=ReorderBuffer(max_delay=0.2))
    await p.submit(SourceBatch([RawMessage(b'{"id":"1"}')], acker("original"), "t"))
    await p.submit(SourceBatch([RawMessage(b'{"id":"1"}')], acker("copy"), "t"))
    await asyncio.sleep(0.05)
    assert acks == [] and sink.routed == []
    await asyncio.sleep(0.2)
    p.tick()
    await p.wait_idle()
    assert sorted(acks) == ["copy", "original"] and len(sink.routed) == 1


class PickySink(CapturingSink):
    """Refuses for good any record whose event id starts with 'big' (like a record over the size limit)."""

    async def publish(self, records: Any) -> None:
        self.publish_calls += 1
        for r in records:
            if dict(r.headers).get("ce_id", b"").startswith(b"big") and r.topic != "ml.events.deadletter":
                raise PublishError("record too large", permanent=True)
        self.records.extend(records)


async def test_an_unpublishable_event_is_dead_lettered_and_the_rest_delivered() -> None:
    """A permanent publish failure does not block the stream: the offending event goes to the dead-letter
    topic with the reason, the others are published, and the batch is acked."""
    sink = PickySink()
    src = InMemorySource([{"id": "a"}, {"id": "big-1"}, {"id": "b"}], batch_size=10)
    p = make_pipeline(sink)
    await run_source(p, src)
    assert sorted(d.event.id for d in sink.routed) == ["a", "b"]
    assert len(sink.dead) == 1 and sink.dead[0].event is not None and sink.dead[0].event.id == "big-1"
    assert "publish failed" in sink.dead[0].reason and "record too large" in sink.dead[0].reason
    assert src.all_acked_once
