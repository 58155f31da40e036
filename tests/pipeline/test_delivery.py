"""The delivery worker with several groups in flight: the next group reaches the sink before the oldest is
confirmed, groups settle oldest first and only once confirmed, and a group that fails after the next one was
handed over is published again without losing or doubling an ack."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import pytest

from bridge.model import OutRecord, PublishError
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
from bridge.pipeline.router import Route, Router
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink, InMemorySource
from testbed.logcapture import capture_module_logs
from testbed.waiting import wait_for


class ControlledSink(CapturingSink):
    """Takes each group at once and confirms it only when the test says so (or fails it)."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[list[OutRecord]] = []
        self.confirmations: list[asyncio.Future[None]] = []

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        self.groups.append(list(records))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.confirmations.append(fut)
        return fut

    async def publish(self, records: Sequence[OutRecord]) -> None:  # the retry path after a failed group
        self.publish_calls += 1
        self.records.extend(records)


def pipeline(sink: CapturingSink, depth: int) -> Pipeline:
    return Pipeline(Router([Route("all", "out")]), sink, dedup=Deduplicator(MemoryDedupStore()),
                    delivery_depth=depth)


async def test_two_groups_in_flight_settle_oldest_first_after_confirmation() -> None:
    """With depth 2 the second group is handed over while the first awaits its broker; neither batch is acked
    before its group is confirmed, and confirming the second first acks nothing until the first is confirmed."""
    sink = ControlledSink()
    p = pipeline(sink, depth=2)
    a = InMemorySource([sagemaker_training_event("a", "j1", 1)], name="a")
    b = InMemorySource([sagemaker_training_event("b", "j1", 2)], name="b")
    a.close_input()
    b.close_input()
    async for batch in a.batches():
        await p.submit(batch)
    await wait_for(lambda: len(sink.groups) == 1, within=5, every=0.005, what="group 1 handed to the sink")
    async for batch in b.batches():
        await p.submit(batch)
    # handed over before the first was confirmed
    await wait_for(lambda: len(sink.groups) == 2, within=5, every=0.005, what="group 2 handed to the sink")
    sink.confirmations[1].set_result(None)
    await asyncio.sleep(0.05)
    assert a.acks == [] and b.acks == []  # oldest first: the second waits for the first
    sink.confirmations[0].set_result(None)
    await p.wait_idle()
    assert a.all_acked_once and b.all_acked_once
    assert [dict(r.headers)["ce_id"] for g in sink.groups for r in g] == [b"a", b"b"]
    assert p.metrics.registry.get_sample_value("bridge_events_out_total", {"route": "all"}) == 2


async def test_a_group_that_fails_after_the_next_was_handed_over_is_published_again() -> None:
    """The first group's confirmation fails (the producer gave up): it is published again, both batches are
    acked exactly once, and the second group's records are not published twice."""
    sink = ControlledSink()
    p = pipeline(sink, depth=2)
    src = InMemorySource(batch_size=1)
    src.put(sagemaker_training_event("x", "j", 1))
    src.put(sagemaker_training_event("y", "j", 2))
    src.close_input()
    batches = [b async for b in src.batches()]
    await p.submit(batches[0])
    await wait_for(lambda: len(sink.groups) == 1, within=5, every=0.005, what="group 1 handed to the sink")
    await p.submit(batches[1])
    await wait_for(lambda: len(sink.groups) == 2, within=5, every=0.005, what="group 2 handed to the sink")
    sink.confirmations[0].set_exception(ConnectionError("broker gone"))
    sink.confirmations[1].set_result(None)
    await p.wait_idle()
    assert src.all_acked_once
    assert [dict(r.headers)["ce_id"] for r in sink.records] == [b"x"]  # the republished first group only
    assert p.metrics.registry.get_sample_value("bridge_publish_errors_total") == 1


async def test_depth_one_hands_over_one_group_at_a_time() -> None:
    """With depth 1 the next group waits until the previous one is confirmed."""
    sink = ControlledSink()
    p = pipeline(sink, depth=1)
    src = InMemorySource(batch_size=1)
    for i in range(2):
        src.put(sagemaker_training_event(f"e{i}", "j", i))
    src.close_input()
    batches = [b async for b in src.batches()]
    await p.submit(batches[0])
    await wait_for(lambda: len(sink.groups) == 1, within=5, every=0.005, what="group 1 handed to the sink")
    await p.submit(batches[1])
    await asyncio.sleep(0.05)
    assert len(sink.groups) == 1
    sink.confirmations[0].set_result(None)
    await wait_for(lambda: len(sink.groups) == 2, within=5, every=0.005, what="group 2 handed to the sink")
    sink.confirmations[1].set_result(None)
    await p.wait_idle()
    assert src.all_acked_once


class GroupLog(CapturingSink):
    """Confirms at once and remembers the value bytes of each group it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.group_bytes: list[int] = []

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        self.group_bytes.append(sum(len(r.value) for r in records))
        return await super().enqueue(records)


async def test_a_large_outbox_is_published_in_bounded_groups() -> None:
    """An outbox larger than a group's share (an eighth of the outbox bound, at least 256 KiB) goes out in several
    groups, none above the share by more than a record, in order, every batch acked once."""
    sink = GroupLog()
    p = Pipeline(Router([Route("all", "out")]), sink, max_outbox_bytes=1024 * 1024, delivery_depth=1)
    src = InMemorySource(batch_size=100)
    for i in range(600):
        ev = sagemaker_training_event(f"g{i}", f"j{i % 9}", i)
        ev["detail"]["Pad"] = "p" * 1000
        src.put(ev)
    src.close_input()
    async for batch in src.batches():  # without dedup, submit does not yield: the outbox fills before the worker runs
        await p.submit(batch)
    await p.flush()
    assert src.all_acked_once
    assert [dict(r.headers)["ce_id"] for r in sink.records] == [f"g{i}".encode() for i in range(600)]
    share = p.delivery.max_group_bytes
    assert len(sink.group_bytes) >= 3 and max(sink.group_bytes) <= share + 2000, (share, sink.group_bytes)


@pytest.mark.parametrize("permanent", [False, True])
async def test_a_failed_group_republishes_only_what_the_sink_did_not_acknowledge(permanent: bool) -> None:
    """A transient failure naming the unacknowledged records: only those are published again, in order, each
    counted as one publish error; a permanent one isolates only those (the acknowledged ones are not re-sent)."""
    sink = ControlledSink()
    p = pipeline(sink, depth=1)
    src = InMemorySource(batch_size=3)
    for i in range(3):
        src.put(sagemaker_training_event(f"e{i}", f"j{i}", i))
    src.close_input()
    async for b in src.batches():
        await p.submit(b)
    await wait_for(lambda: len(sink.groups) == 1, within=5, every=0.005, what="the group handed to the sink")
    group = sink.groups[0]
    sink.confirmations[0].set_exception(PublishError("2 of 3 not acknowledged", permanent=permanent,
                                                     unconfirmed=group[1:]))
    await p.wait_idle()
    assert src.all_acked_once
    assert [dict(r.headers)["ce_id"] for r in sink.records] == [b"e1", b"e2"]
    assert p.metrics.registry.get_sample_value("bridge_publish_errors_total") == (0 if permanent else 2)
    assert p.metrics.registry.get_sample_value("bridge_events_out_total", {"route": "all"}) == 3


async def test_a_dead_letter_log_line_names_the_input_id_when_it_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """An input with an id that cannot become an event logs its dead letter with that id (ids of an array's
    objects comma separated), and with none when the input names none."""
    from bridge.pipeline import delivery

    logs = capture_module_logs(monkeypatch, delivery)
    sink = CapturingSink()
    p = pipeline(sink, depth=1)
    src = InMemorySource([b'{"id": "abc", "type": 1}', b'[{"id": "x1"}, {"id": 7}]', b"{broken"])
    src.close_input()
    async for b in src.batches():
        await p.submit(b)
    await p.wait_idle()
    ids = [e["id"] for e in logs.events if e["event"] == "pipeline.dead_lettered"]
    assert ids == ["abc", "x1,7", None]
