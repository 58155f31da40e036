"""The ceiling: a raw aiokafka pass-through, run as its own process like the bridge.

Consume the input topic with ``getmany`` (same fetch settings as the bridge's Kafka source), append every
record's key and value unchanged to one batch per output partition (``create_batch``/``send_batch``, same
producer settings as the bridge's sink: acks=all, idempotent unless ``--no-idempotence`` (tansu), linger 0,
512 KiB batches), and commit each poll's
offsets once its batches are acknowledged (in poll order, coalesced: one commit in flight at a time, as the
bridge's source does). Polls overlap: up to ``--inflight`` polls may wait for acknowledgement.
No parsing, no per-record work beyond the append. Prints one JSON line: records, seconds from the first
fetched record to the last acknowledged one, rate, peak RSS and whether the producer was idempotent.

    python -m bench.baseline --bootstrap HOST:PORT --input A --output B --expect N [--no-idempotence]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import deque
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.kafka import producer
from bench.memory import peak_rss_mb


class _Committer:
    """Commits acknowledged polls in poll order, coalesced (one commit in flight at a time), like the
    bridge's source: the flow never waits for a commit."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.pending: deque[tuple[asyncio.Future[list[Any]], dict[TopicPartition, int]]] = deque()
        self.ready: dict[TopicPartition, int] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, futures: list[asyncio.Future[Any]], offsets: dict[TopicPartition, int]) -> None:
        self.pending.append((asyncio.gather(*futures), offsets))

    async def advance(self, inflight: int) -> None:
        """Collect acknowledged polls (waiting while more than ``inflight`` are unacknowledged); commit."""
        while self.pending and (self.pending[0][0].done() or len(self.pending) > inflight):
            acked, offsets = self.pending.popleft()
            await acked
            self.ready.update(offsets)
        if self.ready and (self.task is None or self.task.done()):
            if self.task is not None:
                await self.task
            self.task = asyncio.create_task(self.consumer.commit(self.ready))
            self.ready = {}

    async def finish(self) -> None:
        await self.advance(0)
        if self.task is not None:
            await self.task
        if self.ready:
            await self.consumer.commit(self.ready)


async def run(bootstrap: str, source: str, target: str, expect: int, inflight: int = 8,
              max_records: int = 1000, group: str = "bench-baseline",
              fetch_wait_ms: int = 500, idempotent: bool = True) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=max_records, fetch_max_wait_ms=fetch_wait_ms,
        fetch_max_bytes=50 * 1024 * 1024, max_partition_fetch_bytes=1024 * 1024,
    )
    prod = producer(bootstrap, idempotent=idempotent)
    await prod.start()
    await consumer.start()
    committer = _Committer(consumer)
    count = 0
    t_first = 0.0
    try:
        while count < expect:
            fetched = await consumer.getmany(timeout_ms=100, max_records=max_records)
            if not fetched:
                await committer.advance(inflight)
                continue
            if not t_first:
                t_first = time.perf_counter()
            futures: list[asyncio.Future[Any]] = []
            offsets: dict[TopicPartition, int] = {}
            for tp, records in fetched.items():
                if not records:
                    continue
                batch = prod.create_batch()
                for r in records:
                    if batch.append(key=r.key, value=r.value, timestamp=None, headers=[]) is None:
                        futures.append(await prod.send_batch(batch, target, partition=tp.partition))
                        batch = prod.create_batch()
                        batch.append(key=r.key, value=r.value, timestamp=None, headers=[])
                if batch.record_count():
                    futures.append(await prod.send_batch(batch, target, partition=tp.partition))
                offsets[tp] = records[-1].offset + 1
                count += len(records)
            committer.add(futures, offsets)
            await committer.advance(inflight)
        await committer.finish()
        seconds = time.perf_counter() - t_first
    finally:
        await consumer.stop()
        await prod.stop()
    return {"records": count, "seconds": seconds, "rate": count / seconds if seconds else 0.0,
            "peak_rss_mb": peak_rss_mb(), "idempotent": prod._txn_manager is not None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--expect", type=int, required=True, help="records to pass through before stopping")
    p.add_argument("--inflight", type=int, default=8)
    p.add_argument("--group", default="bench-baseline")
    p.add_argument("--fetch-wait-ms", type=int, default=500,
                   help="fetch_max_wait_ms (the bridge's default: 500)")
    p.add_argument("--idempotence", action=argparse.BooleanOptionalAction, default=True,
                   help="idempotent producer (default; --no-idempotence for tansu, which has none)")
    a = p.parse_args(argv)
    result = asyncio.run(run(a.bootstrap, a.input, a.output, a.expect, a.inflight, group=a.group,
                             fetch_wait_ms=a.fetch_wait_ms, idempotent=a.idempotence))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
