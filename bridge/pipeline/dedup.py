"""Dedup by (source, id) within a window bounded by time and by count.

Correctness under at-least-once delivery: an id is *recorded* in the store only once its event has been
delivered (or deliberately dropped). Until then it is *in flight*: later copies are dropped as duplicates,
but if the process dies first, the source redelivers the original and the store does not yet know it, so
nothing is lost. A store only answers "seen?" and "record these"; the in-flight set lives here.

A remote store that fails (down, slow, wrong password) is handled by ``on_store_error``
(``bridge.storeguard``): every call has a timeout; ``block`` (default) retries with backoff and holds the batch,
``pass`` publishes without dedup (each such event counted) and tries the store again after a backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import IntEnum
from typing import Protocol

import structlog

from bridge.metrics import MetricGroup, Metrics
from bridge.retry import DEDUP_STORE, Backoff
from bridge.storeguard import OnStoreError, StoreBypassed, StoreGuard

log = structlog.get_logger("bridge.dedup")

NOT_CHECKED = "not contacted yet (PING pending)"

DedupKey = tuple[str, str]


class DedupCode(IntEnum):
    """How ``Deduplicator.split`` classifies a key."""

    FRESH = 0
    """Not seen: now in flight, to be published."""
    SEEN = 1
    """Recorded in the store: delivered before."""
    INFLIGHT = 2
    """A copy is on its way (earlier in this call, or an unsettled event)."""


FRESH, SEEN, INFLIGHT = DedupCode.FRESH, DedupCode.SEEN, DedupCode.INFLIGHT


class DedupStore(Protocol):
    """Remembers delivered (source, id) keys for a window. Implementations: memory, Redis."""

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        """For each key, whether it was recorded within the window."""
        ...

    async def record(self, keys: Sequence[DedupKey]) -> None:
        """Remember these keys (already delivered or deliberately dropped)."""
        ...

    async def close(self) -> None: ...


class MemoryDedupStore:
    """In-process store: a set of 64-bit key hashes plus a FIFO for eviction by age and by count.

    Memory is about 70 bytes per remembered id (int object, set slot, deque slot), so 1,000,000 ids fit
    in well under 150 MB. Hash collisions (2^-64 per pair) would drop an event; at a million ids the
    chance of any collision is about 3e-8.
    """

    def __init__(
        self,
        window_seconds: float = 600.0,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._keys: set[int] = set()
        self._order: deque[int] = deque()
        self._buckets: deque[list[float]] = deque()  # [timestamp, count] in insertion order

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def _hash(key: DedupKey) -> int:
        return hash(key)

    def seen_now(self, keys: Iterable[DedupKey]) -> list[bool]:
        self._expire()
        present = self._keys
        return [hash(k) in present for k in keys]

    def _add(self, keys: Iterable[DedupKey]) -> int:
        """Remember the ids not yet known; returns how many were new."""
        present = self._keys
        order = self._order
        added = 0
        for key in keys:
            h = hash(key)
            if h not in present:
                present.add(h)
                order.append(h)
                added += 1
        return added

    def record_now(self, keys: Iterable[DedupKey]) -> None:
        now = self._clock()
        added = self._add(keys)
        if added:
            buckets = self._buckets
            if buckets and now - buckets[-1][0] < 1.0:
                buckets[-1][1] += added
            else:
                buckets.append([now, float(added)])
        self._expire(now)

    def clear(self) -> None:
        self._keys.clear()
        self._order.clear()
        self._buckets.clear()

    def restore(self, batches: Iterable[tuple[float, Sequence[DedupKey]]]) -> None:
        """Ids recorded ``age`` seconds ago, oldest first (exactly-once delivery reads them back from Kafka): they
        expire when they would have, had this process recorded them."""
        now = self._clock()
        buckets = self._buckets
        for age, keys in batches:
            when = now - max(0.0, age)
            if when < now - self.window:
                continue
            added = self._add(keys)
            if added:
                if buckets and buckets[-1][0] >= when:  # out of order by a little: keep the buckets monotonic
                    buckets[-1][1] += added
                else:
                    buckets.append([when, float(added)])
        self._expire(now)

    def _expire(self, now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        buckets = self._buckets
        horizon = now - self.window
        while buckets and buckets[0][0] < horizon:
            _, count = buckets.popleft()
            self._evict(int(count))
        overflow = len(self._order) - self.max_entries
        if overflow > 0:
            self._evict(overflow)
            while overflow > 0 and buckets:
                take = min(overflow, int(buckets[0][1]))
                buckets[0][1] -= take
                overflow -= take
                if buckets[0][1] <= 0:
                    buckets.popleft()

    def _evict(self, n: int) -> None:
        order, present = self._order, self._keys
        for _ in range(min(n, len(order))):
            present.discard(order.popleft())

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        return self.seen_now(keys)

    async def record(self, keys: Sequence[DedupKey]) -> None:
        self.record_now(keys)

    async def close(self) -> None:
        return None


class DedupMetrics(MetricGroup):
    """What dedup writes (through ``Deduplicator``'s ``on_bypass``)."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.bypassed = m.counter("bridge_dedup_bypassed", "Events published without a dedup check because the store "
                                  "failed (dedup.on_store_error: pass)")


class Deduplicator(StoreGuard):
    """The dedup stage: splits events into fresh and duplicate, tracking in-flight keys (its store calls are
    guarded by ``StoreGuard``)."""

    def __init__(
        self,
        store: DedupStore,
        *,
        timeout: float = 2.0,
        on_store_error: OnStoreError = "block",
        backoff: Backoff = DEDUP_STORE,
        on_bypass: Callable[[int], None] | None = None,
        on_store_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(timeout=timeout, on_store_error=on_store_error, backoff=backoff,
                         on_store_failure=on_store_failure, clock=clock)
        self.store = store
        self._inflight: set[DedupKey] = set()  # a set: about 30 bytes less per held event than a dict
        self._memory = store if isinstance(store, MemoryDedupStore) else None
        self._on_bypass = on_bypass
        self._ping: Callable[[], Awaitable[object]] | None = getattr(store, "ping", None)
        if self._ping is not None:  # a remote store is not known to work before it answered once
            self.store_error = NOT_CHECKED

    async def check(self) -> None:
        """PING a remote store (with its credentials) until it answers, through the guard: readiness says what is
        wrong from the start instead of ``ok`` before the store was ever contacted."""
        ping = self._ping
        if ping is None:
            return
        while True:
            try:
                await self.call(lambda _: ping(), None)
                log.info("dedup.store_checked", store=type(self.store).__name__)
                return
            except StoreBypassed:  # ``pass``: the guard tries again after its backoff
                await asyncio.sleep(max(0.05, self._skip_until - self._clock()))

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def split(self, keys: Sequence[DedupKey]) -> list[DedupCode]:
        """Classify each key: ``FRESH`` (now in flight), ``SEEN`` (recorded: delivered before), or
        ``INFLIGHT`` (a copy is still on its way: an earlier key in this call or an unsettled event)."""
        inflight = self._inflight
        codes = [FRESH] * len(keys)
        candidates: list[int] = []
        first: dict[DedupKey, int] = {}  # key -> index of its first occurrence among the candidates
        repeats: list[tuple[int, int]] = []  # (index, index of the first occurrence) of copies in this call
        for i, key in enumerate(keys):
            if key in inflight:
                codes[i] = INFLIGHT
            elif key in first:
                repeats.append((i, first[key]))
            else:
                first[key] = i
                candidates.append(i)
        if candidates:
            cand_keys = [keys[i] for i in candidates]
            if self._memory is not None:
                seen = self._memory.seen_now(cand_keys)
            else:
                try:
                    seen = await self.call(self.store.seen, cand_keys)
                except StoreBypassed:
                    seen = [False] * len(cand_keys)
                    if self._on_bypass is not None:
                        self._on_bypass(len(cand_keys))
            for i, was_seen in zip(candidates, seen, strict=True):
                if was_seen:
                    codes[i] = SEEN
                else:
                    inflight.add(keys[i])
        # A copy of a key that occurs earlier in this call is SEEN like that occurrence when it was delivered
        # before, and INFLIGHT only when that occurrence is now in flight: a copy waiting for an in-flight
        # original that does not exist would hold its batch's ack (and the source position) forever.
        for i, j in repeats:
            codes[i] = SEEN if codes[j] == SEEN else INFLIGHT
        return codes

    async def settle(self, keys: Sequence[DedupKey]) -> None:
        """The events with these keys are delivered or deliberately dropped: remember them."""
        if not keys:
            return
        if self._memory is not None:
            self._memory.record_now(keys)
        else:
            try:
                await self.call(self.store.record, keys)
            except StoreBypassed:
                log.warning("dedup.ids_not_recorded", ids=len(keys), error=self.store_error,
                            detail="the dedup store is failing: these ids may be published again")
        inflight = self._inflight
        for key in keys:
            inflight.discard(key)

    def forget(self, keys: Sequence[DedupKey]) -> None:
        """The events with these keys were not delivered (shutdown before publish): no longer in flight."""
        for key in keys:
            self._inflight.discard(key)

    def reset(self) -> None:
        """Nothing in flight, nothing remembered (a rewind of exactly-once delivery: ``restore`` follows)."""
        self._inflight.clear()
        if self._memory is not None:
            self._memory.clear()

    def restore(self, batches: Iterable[tuple[float, Sequence[DedupKey]]]) -> None:
        """Ids read back from the durable state (exactly-once delivery keeps the dedup store in memory)."""
        if self._memory is not None:
            self._memory.restore(batches)
