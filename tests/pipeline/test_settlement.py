"""The after-confirm owner: one order of steps (plug-in, dedup, units, positions marked, positions written), one
write per source however many of its batches completed, and the in-flight count changed by it alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bridge.metrics import Metrics
from bridge.model import RawMessage, Release, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import DedupKey, Deduplicator, MemoryDedupStore
from bridge.pipeline.records import Record
from bridge.pipeline.router import Route, Router
from bridge.pipeline.settlement import Settlement
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink
from tests.state.helpers import batch

Steps = list[str]


class RecordingStore:
    """A dedup store (not the in-memory one, whose calls the deduplicator makes inline) that logs its records."""

    def __init__(self, steps: Steps) -> None:
        self.inner = MemoryDedupStore()
        self.steps = steps

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        return self.inner.seen_now(keys)

    async def record(self, keys: Sequence[DedupKey]) -> None:
        self.steps.append(f"dedup {len(keys)}")
        self.inner.record_now(keys)

    async def close(self) -> None:
        return None


class Writer:
    """A source's position writer that logs its flushes (and what was marked before each)."""

    def __init__(self, steps: Steps, name: str) -> None:
        self.steps = steps
        self.name = name

    def release(self, n: int) -> Release:
        return Release(lambda: self.steps.append(f"mark {self.name}{n}"), self)

    async def flush(self) -> None:
        self.steps.append(f"flush {self.name}")


class Plan:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    async def settle(self) -> None:
        self.steps.append("plan")

    def discard(self) -> None:
        self.steps.append("discard")


def record(settlement: Settlement, batch: SourceBatch, key: str) -> Record:
    tracker = settlement.track(batch, 0.0)
    tracker.hold()
    tracker.seal()
    settlement.admitted(1)
    return Record(b"v", b"m", "0", 1, ("src", key), (), tracker)


async def test_a_group_is_settled_plug_in_then_dedup_then_units_then_marks_then_one_write_per_source() -> None:
    """Steps 1 to 5 in their order: the plan records its states, dedup records the ids, the units complete three
    batches of two sources, each batch is marked, and each source writes once after all marks."""
    steps: Steps = []
    metrics = Metrics()
    s = Settlement(Deduplicator(RecordingStore(steps)), metrics)
    kafka, hubs = Writer(steps, "k"), Writer(steps, "e")
    batches = [SourceBatch([], source="k", release=kafka.release(0)), SourceBatch([], source="k",
               release=kafka.release(1)), SourceBatch([], source="e", release=hubs.release(0))]
    records = [record(s, b, f"id{i}") for i, b in enumerate(batches)]
    assert s.inflight == 3
    await s.settle(records, (), Plan(steps))
    await s.wait()
    assert steps == ["plan", "dedup 3", "mark k0", "mark k1", "mark e0", "flush k", "flush e"]
    assert s.inflight == 0
    assert metrics.registry.get_sample_value("bridge_batches_acked_total", {"source": "k"}) == 2


async def test_batches_complete_outside_a_group_go_through_the_same_position_steps() -> None:
    """A batch whose events were all delivered before (dedup SEEN) completes at admission: it is marked and its
    source writes on the next turn of the loop, without any group being settled; a plain ack is called once."""
    steps: Steps = []
    store = MemoryDedupStore()
    store.record_now([("aws.sagemaker/us-east-1/123456789012", "x")])
    sink = CapturingSink()
    p = Pipeline(Router([Route("all", "out")]), sink, dedup=Deduplicator(store))
    writer = Writer(steps, "k")
    body = batch(sagemaker_training_event("x", "j", 1)).messages
    await p.submit(SourceBatch(list(body), source="k", release=writer.release(0)))
    await asyncio.sleep(0)
    await p.settlement.wait()
    assert steps == ["mark k0", "flush k"] and sink.records == []
    acks: list[int] = []

    async def ack() -> None:
        acks.append(1)

    await p.submit(SourceBatch([RawMessage(b"not json", {}, "k", "k@1")], ack, "k"))
    await p.wait_idle()
    assert acks == [1] and p.inflight == 0 and len(sink.dead) == 1
    await p.close(grace=1)
