"""Dedup with a failing remote store: every call times out, ``block`` retries and reports the reason, ``pass``
publishes unchecked (counted) and backs off; the public names stay importable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bridge.pipeline.dedup import FRESH, INFLIGHT, SEEN, DedupCode, DedupKey, Deduplicator, MemoryDedupStore
from bridge.retry import Backoff


class FlakyStore:
    """A remote-like store: fails the next ``fail`` calls (or hangs while ``hang`` is set), else remembers."""

    def __init__(self) -> None:
        self.fail = 0
        self.hang = False
        self.calls = 0
        self.keys: set[DedupKey] = set()

    async def _maybe_fail(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Connection refused")

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        await self._maybe_fail()
        return [k in self.keys for k in keys]

    async def record(self, keys: Sequence[DedupKey]) -> None:
        await self._maybe_fail()
        self.keys.update(keys)

    async def close(self) -> None:
        return None


def test_codes_are_an_enum_and_keep_their_names() -> None:
    """FRESH/SEEN/INFLIGHT are importable members of DedupCode and compare equal to their old integers."""
    assert (FRESH, SEEN, INFLIGHT) == (DedupCode.FRESH, DedupCode.SEEN, DedupCode.INFLIGHT) == (0, 1, 2)
    assert [c.name for c in DedupCode] == ["FRESH", "SEEN", "INFLIGHT"]


async def test_block_retries_until_the_store_answers_and_reports_the_reason_meanwhile() -> None:
    """``block``: failed calls are retried with backoff; store_error names the failure while it lasts and is
    cleared by the first success; the answer is then the store's."""
    store = FlakyStore()
    store.keys.add(("s", "old"))
    store.fail = 3
    failures: list[int] = []
    dedup = Deduplicator(store, timeout=0.5, backoff=Backoff(0.01, 0.02), on_store_failure=lambda: failures.append(1))
    errors: list[str | None] = []
    task = asyncio.create_task(dedup.split([("s", "old"), ("s", "new")]))
    while not task.done():
        errors.append(dedup.store_error)
        await asyncio.sleep(0.002)
    assert await task == [SEEN, FRESH]
    assert "ConnectionError: Connection refused" in errors
    assert dedup.store_error is None and dedup.store_failing_since is None
    assert len(failures) == 3 and store.calls == 4


async def test_block_times_out_a_hanging_store_and_stays_cancellable() -> None:
    """A store that never answers: each call gives up after ``timeout`` (reason says so), retries go on, and the
    waiting split can be cancelled (shutdown)."""
    store = FlakyStore()
    store.hang = True
    dedup = Deduplicator(store, timeout=0.05, backoff=Backoff(0.01, 0.01))
    task = asyncio.create_task(dedup.split([("s", "a")]))
    await asyncio.sleep(0.3)
    assert not task.done()
    assert dedup.store_error == "TimeoutError: no answer within 0.05 s"
    assert store.calls >= 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_pass_publishes_unchecked_counts_and_backs_off() -> None:
    """``pass``: a failed check lets the events through as FRESH (counted), the store is skipped until the backoff
    has passed, settle does not block, and dedup resumes once the store answers."""
    store = FlakyStore()
    store.keys.add(("s", "old"))
    store.hang = True
    bypassed: list[int] = []
    now = [100.0]
    dedup = Deduplicator(store, timeout=0.05, on_store_error="pass", backoff=Backoff(1.0, 4.0),
                         on_bypass=bypassed.append, clock=lambda: now[0])
    assert await dedup.split([("s", "old"), ("s", "x")]) == [FRESH, FRESH]  # unchecked: old goes out again
    assert bypassed == [2] and store.calls == 1 and dedup.store_error is not None
    assert await dedup.split([("s", "y"), ("s", "x")]) == [FRESH, INFLIGHT]  # in-flight tracking still works
    assert store.calls == 1  # skipped during the backoff
    await asyncio.wait_for(dedup.settle([("s", "old"), ("s", "x"), ("s", "y")]), 1)  # never blocks
    store.hang = False
    now[0] += 1.5
    assert await dedup.split([("s", "old"), ("s", "z")]) == [SEEN, FRESH]
    assert dedup.store_error is None and bypassed == [2, 1]


async def test_memory_store_never_times_out() -> None:
    """The in-memory store is called directly: no timeout, no error state."""
    dedup = Deduplicator(MemoryDedupStore(), timeout=0.000001)
    assert await dedup.split([("s", "a")]) == [FRESH]
    await dedup.settle([("s", "a")])
    assert await dedup.split([("s", "a")]) == [SEEN]
    assert dedup.store_error is None
