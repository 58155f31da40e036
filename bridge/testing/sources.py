"""Read from any Source in tests: pull batches until enough messages arrived (or fail on a timeout)."""

from __future__ import annotations

import asyncio

from bridge.model import Source, SourceBatch


async def collect_batches(source: Source, count: int, within: float = 30.0) -> list[SourceBatch]:
    """Pull batches from ``source`` until they hold ``count`` messages; raises TimeoutError after ``within`` s.
    The batches are not acked: the caller decides."""
    batches: list[SourceBatch] = []
    seen = 0
    agen = source.batches()
    try:
        async with asyncio.timeout(within):
            async for batch in agen:
                batches.append(batch)
                seen += len(batch.messages)
                if seen >= count:
                    break
    finally:
        await agen.aclose()  # type: ignore[attr-defined]
    return batches
