"""Dedup stage and the in-memory store: window bounded by time and count, in-flight tracking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.pipeline.dedup import FRESH, INFLIGHT, SEEN, Deduplicator, MemoryDedupStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_memory_store_forgets_ids_after_the_time_window() -> None:
    """An id recorded longer ago than window_seconds is no longer reported as seen."""
    clock = FakeClock()
    store = MemoryDedupStore(window_seconds=10, max_entries=100, clock=clock)
    store.record_now([("s", "a")])
    assert store.seen_now([("s", "a"), ("s", "b")]) == [True, False]
    clock.t += 9
    assert store.seen_now([("s", "a")]) == [True]
    clock.t += 2.5
    assert store.seen_now([("s", "a")]) == [False]
    assert len(store) == 0


def test_memory_store_evicts_oldest_ids_beyond_max_entries() -> None:
    """With more than max_entries ids, the oldest are forgotten first and the size stays bounded."""
    store = MemoryDedupStore(window_seconds=3600, max_entries=3, clock=FakeClock())
    store.record_now([("s", str(i)) for i in range(5)])
    assert len(store) == 3
    assert store.seen_now([("s", str(i)) for i in range(5)]) == [False, False, True, True, True]


def test_source_is_part_of_the_key() -> None:
    """The same id from two different sources is not a duplicate."""
    store = MemoryDedupStore(clock=FakeClock())
    store.record_now([("workspace-a", "1")])
    assert store.seen_now([("workspace-b", "1"), ("workspace-a", "1")]) == [False, True]


async def test_duplicates_within_batch_in_flight_and_recorded_are_flagged() -> None:
    """A key repeated in one batch, one still in flight, and one already delivered are all duplicates."""
    dedup = Deduplicator(MemoryDedupStore(clock=FakeClock()))
    assert await dedup.split([("s", "1"), ("s", "1"), ("s", "2")]) == [FRESH, INFLIGHT, FRESH]
    assert dedup.inflight == 2
    assert await dedup.split([("s", "2"), ("s", "3")]) == [INFLIGHT, FRESH]
    await dedup.settle([("s", "1"), ("s", "2")])
    assert dedup.inflight == 1
    assert await dedup.split([("s", "1"), ("s", "2"), ("s", "3")]) == [SEEN, SEEN, INFLIGHT]


async def test_repeated_copies_of_a_delivered_key_in_one_batch_are_all_seen() -> None:
    """Two copies of an already delivered key in one call are both SEEN, not one SEEN and one INFLIGHT
    (nothing is in flight for them to wait for)."""
    dedup = Deduplicator(MemoryDedupStore(clock=FakeClock()))
    await dedup.split([("s", "1")])
    await dedup.settle([("s", "1")])
    assert await dedup.split([("s", "1"), ("s", "2"), ("s", "1"), ("s", "2")]) == [SEEN, FRESH, SEEN, INFLIGHT]
    assert dedup.inflight == 1


async def test_forgotten_in_flight_key_is_accepted_again() -> None:
    """An event that was never delivered (forgotten at shutdown) is not remembered as delivered."""
    dedup = Deduplicator(MemoryDedupStore(clock=FakeClock()))
    await dedup.split([("s", "1")])
    dedup.forget([("s", "1")])
    assert await dedup.split([("s", "1")]) == [FRESH]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), max_size=20), max_size=15))
def test_each_id_passes_exactly_once_property(batches: list[list[int]]) -> None:
    """Whatever the batches, every distinct id passes dedup exactly once and nothing else passes, and a copy
    is flagged in flight only while its original really is."""
    import asyncio

    async def run() -> list[int]:
        dedup = Deduplicator(MemoryDedupStore(clock=FakeClock()))
        passed: list[int] = []
        unsettled: set[int] = set()  # passed (FRESH) and not settled yet: really in flight
        for i, batch in enumerate(batches):
            keys = [("s", str(x)) for x in batch]
            flags = await dedup.split(keys)
            fresh = [x for x, d in zip(batch, flags, strict=True) if d == FRESH]
            # a copy flagged INFLIGHT waits for its original: that original must really be in flight
            assert all(x in unsettled or x in fresh for x, d in zip(batch, flags, strict=True) if d == INFLIGHT)
            passed.extend(fresh)
            unsettled.update(fresh)
            assert dedup.inflight == len(unsettled)
            if i % 2:  # settle every other batch late, to mix in-flight and recorded states
                await dedup.settle([("s", str(x)) for x in fresh])
                unsettled.difference_update(fresh)
        return passed

    passed = asyncio.new_event_loop().run_until_complete(run())
    assert sorted(passed) == sorted({x for b in batches for x in b})
