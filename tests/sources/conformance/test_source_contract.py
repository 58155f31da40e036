"""The source contract (docs/design.md, "The contract between stages"), run against every source on its real test
broker (one ``<source>_conformance`` fixture each, tests/sources/conformance/conftest.py): batches released exactly
once through the pipeline, out-of-order acks, restart, the memory budget, lost ownership, poison bodies."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from bridge.limits import MemoryBudget
from bridge.model import Release, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
from bridge.pipeline.router import Route, Router
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink
from tests.sources.conformance.harness import Reader, SourceHarness, bodies, running

pytestmark = pytest.mark.broker  # every source on its real test broker (the harness fixture is chosen at run time)

def numbered(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i:03d}".encode() for i in range(n)]


async def ack_all(batches: list[SourceBatch]) -> None:
    for batch in batches:
        assert batch.ack is not None
        await batch.ack()


class Marks:
    """Wraps each batch's release to count how often the pipeline marks it."""

    def __init__(self) -> None:
        self.count: Counter[int] = Counter()
        self.batches = 0

    def wrap(self, batch: SourceBatch) -> SourceBatch:
        number = self.batches
        self.batches += 1
        assert batch.release is not None, "the sources the bridge ships split their release"
        inner = batch.release

        def mark() -> None:
            self.count[number] += 1
            inner.mark()

        return SourceBatch(batch.messages, None, batch.source, batch.nbytes, batch.nack, Release(mark, inner.writer))


async def test_through_the_pipeline_each_batch_is_released_exactly_once_and_a_restart_reads_nothing_again(
    harness: SourceHarness,
) -> None:
    """Events (some twice) and a body that is no event go through a pipeline: each batch is marked exactly once,
    each event published once, the bad body dead-lettered, and a new consumer of the stream gets nothing again."""
    events = [orjson.dumps(sagemaker_training_event(f"id-{i}", f"job-{i % 4}", i)) for i in range(24)]
    sent = [*events, *events[:5], b"{not an event"]
    await harness.produce(sent)
    sink = CapturingSink()
    pipeline = Pipeline(Router([Route("all", "out")]), sink, dedup=Deduplicator(MemoryDedupStore()))
    marks = Marks()
    async with running(harness.source(batch_size=7)) as reader:
        admitted = 0
        while admitted < len(sent):
            for batch in await reader.take(1):
                admitted += len(batch.messages)
                await pipeline.submit(marks.wrap(batch))
        await pipeline.flush()
        assert await reader.quiet(1.0) == []
    await pipeline.close(grace=5)
    assert marks.batches > 1 and set(marks.count) == set(range(marks.batches)) and set(marks.count.values()) == {1}
    assert sorted(r.event.id for r in sink.routed) == sorted(f"id-{i}" for i in range(24))
    assert [d.raw for d in sink.dead] == [b"{not an event"]
    async with running(harness.source()) as again:
        assert bodies(await again.quiet(harness.quiet)) == []


async def test_out_of_order_acks_release_only_the_contiguous_prefix(harness: SourceHarness) -> None:
    """The first and then the last of several batches are acked, those between are not: a restart gets every
    message after the first batch again on a stream (its positions move only over a contiguous prefix, never to
    the later ack past the gap), and exactly the unacked batches on a queue (each batch releases its own)."""
    sent = numbered("ooo", 8)
    await harness.produce(sent)
    async with running(harness.source(batch_size=2)) as reader:
        batches = await reader.take(len(sent))
        assert len(batches) >= 3
        await ack_all([batches[0], batches[-1]])
    middle = bodies(batches[1:-1])
    expected = bodies(batches[1:]) if harness.ordered else middle
    async with running(harness.source(batch_size=10)) as again:
        got = bodies(await again.take(len(expected)) + await again.quiet(harness.quiet))
    if harness.ordered:
        assert got == expected  # from the first unreleased position on, in order
    else:
        assert sorted(got) == sorted(middle)


async def test_a_restart_resumes_right_after_the_last_release(harness: SourceHarness) -> None:
    """Everything read and acked, then more written while no consumer runs: the next consumer gets exactly the
    new messages, once."""
    await harness.produce(numbered("before", 5))
    async with running(harness.source()) as reader:
        await ack_all(await reader.take(5))
    after = numbered("after", 4)
    await harness.produce(after)
    async with running(harness.source()) as again:
        got = bodies(await again.take(len(after)) + await again.quiet(harness.quiet))
    assert (got if harness.ordered else sorted(got)) == after


async def test_the_source_stops_fetching_at_the_memory_budget_and_resumes_below_it(harness: SourceHarness) -> None:
    """With a budget of a few messages and nothing admitted (nothing refunded), the source stops handing out
    batches well before the backlog is read; once the budget is refunded it goes on, and every message arrives
    exactly once."""
    sent = [b"%03d" % i + b"." * 997 for i in range(60)]
    await harness.produce(sent)
    budget = MemoryBudget(8_000)
    async with running(harness.source(batch_size=5, budget=budget)) as reader:
        held = await reader.take(1)
        held += await reader.quiet(harness.quiet)
        assert budget.full
        assert 0 < len(bodies(held)) < len(sent) // 2, f"{len(bodies(held))} of {len(sent)} read over the budget"
        got = bodies(held)
        budget.refund("source", budget.held["source"])
        while len(got) < len(sent):
            for batch in await reader.take(1):
                got += [m.body for m in batch.messages]
                budget.refund("source", batch.nbytes)  # admitted
        await ack_all(held)
        assert await reader.quiet(1.0) == []
    assert sorted(got) == sorted(sent)


async def test_positions_lost_to_another_consumer_go_to_it_and_late_acks_release_nothing(
    harness: SourceHarness,
) -> None:
    """A consumer holds unacked batches when another takes its positions away (rebalance, partition claimed,
    visibility run out): the other gets the lost messages, what was acked before stays released, and on a stream
    the late acks of the lost positions move nothing (a third consumer gets them once more)."""
    for partition in (0, 1):
        await harness.produce(numbered(f"p{partition}", 6), partition)
    first = harness.holder()
    async with running(first) as reader:
        batches = await reader.take(12)
        acked = [batches[0]]
        await ack_all(acked)
        held = batches[1:]
        took = await harness.take_over(first, held)
        second = Reader(took.second)
        try:
            assert took.lost, "the take-over moved nothing away from the first consumer"
            got = set(bodies(await second.take(len(took.lost), within=60)))
            await ack_all(held)  # late: for the lost positions, too late
            got |= set(bodies(await second.quiet(1.0)))
        finally:
            await second.close()
            await took.second.stop()
    assert took.lost <= got
    assert not got & set(bodies(acked))
    if harness.ordered:
        async with running(harness.source()) as third:
            again = set(bodies(await third.take(len(took.lost), within=60)))
        assert took.lost <= again


async def test_bodies_that_are_no_event_pass_through_unchanged(harness: SourceHarness) -> None:
    """Empty, binary, truncated and very large bodies come out byte for byte as written, each once, and are
    released like any other."""
    poison = harness.poison()
    await harness.produce(poison)
    async with running(harness.source()) as reader:
        batches = await reader.take(len(poison))
        assert sorted(bodies(batches)) == sorted(poison)
        assert all(m.position and m.source == reader.source.name for b in batches for m in b.messages)
        await ack_all(batches)
    async with running(harness.source()) as again:
        assert bodies(await again.quiet(harness.quiet)) == []
