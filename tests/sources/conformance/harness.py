"""What the conformance suite needs of a source: a ``SourceHarness`` per connector, on its real test broker.

A harness owns one fresh stream (a topic, an event hub, a queue) and the group or checkpoint store consumers of
it share. ``source()`` builds a new consumer of that stream (a restart, or a second replica); ``produce`` writes
into it; ``holder`` and ``take_over`` make a second consumer take positions away from a first one, the way the
broker moves them (a rebalance, a partition claimed by another owner, a visibility timeout that ran out).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.limits import MemoryBudget
from bridge.model import Source, SourceBatch


@dataclass
class TakeOver:
    """A second consumer that took positions away from a first one, and the held messages it must get again."""

    second: Source
    lost: set[bytes]


class SourceHarness(Protocol):
    """One connector on its real test broker (see the module docstring)."""

    name: str
    ordered: bool
    """Positions are released as a contiguous prefix per partition (a stream); False: each batch releases its own
    messages (a queue)."""
    quiet: float
    """Seconds without a batch that mean nothing more comes: longer than any delay after which the broker would
    deliver again what was not released (SQS: the visibility timeout)."""

    async def produce(self, bodies: Sequence[bytes], partition: int = 0) -> None: ...

    def source(self, *, batch_size: int = 10, budget: MemoryBudget | None = None) -> Source: ...

    def poison(self) -> list[bytes]:
        """Bodies the broker carries that are no event at all (the source must pass them on unchanged)."""
        ...

    def holder(self) -> Source:
        """A consumer of two partitions (or of the queue) that will lose what it holds to ``take_over``."""
        ...

    async def take_over(self, first: Source, held: Sequence[SourceBatch]) -> TakeOver:
        """Start a second consumer and wait until it owns positions of ``held`` that ``first`` lost."""
        ...


def bodies(batches: Sequence[SourceBatch]) -> list[bytes]:
    return [m.body for b in batches for m in b.messages]


class Reader:
    """The batches of a running source, pumped into a queue by a task of their own, so waiting for them with a
    timeout never cancels the source's generator."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._queue: asyncio.Queue[SourceBatch] = asyncio.Queue()
        self._early: deque[SourceBatch] = deque()
        self._pump = asyncio.create_task(self._run(), name=f"conformance-{source.name}")

    async def _run(self) -> None:
        async for batch in self.source.batches():
            self._queue.put_nowait(batch)

    async def take(self, count: int, within: float = 30.0) -> list[SourceBatch]:
        """Batches until they hold ``count`` messages (TimeoutError after ``within`` s)."""
        out: list[SourceBatch] = []
        seen = 0
        async with asyncio.timeout(within):
            while seen < count:
                out.append(await self._next())
                seen += len(out[-1].messages)
        return out

    async def quiet(self, seconds: float) -> list[SourceBatch]:
        """Everything that arrives within ``seconds`` (an empty list: the source has nothing more)."""
        out: list[SourceBatch] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    out.append(await self._next())
        return out

    async def _next(self) -> SourceBatch:
        if self._early:
            return self._early.popleft()
        if not self._queue.empty():
            return self._queue.get_nowait()
        getter = asyncio.ensure_future(self._queue.get())
        try:
            done, _ = await asyncio.wait({getter, self._pump}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # a timeout: a batch the getter already took is kept for the next call
            if getter.done() and not getter.cancelled():
                self._early.append(getter.result())
            getter.cancel()
            raise
        if getter in done:
            return getter.result()
        getter.cancel()
        self._pump.result()  # the source failed: its exception
        raise AssertionError(f"source {self.source.name} ended its batches")

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump


@contextlib.asynccontextmanager
async def running(source: Source) -> AsyncIterator[Reader]:
    """The source started and read; stopped on the way out."""
    await source.start()
    reader = Reader(source)
    try:
        yield reader
    finally:
        await reader.close()
        await source.stop()
