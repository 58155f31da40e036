"""Kafka helpers of the benchmark: bulk produce with the batch API, offsets, output timestamp spans."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",  # idempotence: per broker (bench/brokers.py), as the bridge sink's
    "linger_ms": 0,  # as the bridge sink (it hands over whole batches)
    "max_batch_size": 512 * 1024,
    "max_request_size": 1024 * 1024 + 1024,
}


def partition_of(key: bytes | None, partitions: int, index: int) -> int:
    """The partition of a record: crc32 of the key, round robin for keyless records."""
    if key is None:
        return index % partitions
    return zlib.crc32(key) % partitions


def producer(bootstrap: str, *, idempotent: bool, **overrides: Any) -> AIOKafkaProducer:
    """A producer of the benchmark: ``PRODUCER_DEFAULTS`` with ``overrides``, idempotent or not (the broker's
    family, ``bench.brokers.Broker.idempotent``)."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=idempotent,
                            **{**PRODUCER_DEFAULTS, **overrides})


async def send_records(
    prod: AIOKafkaProducer,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    partitions: int,
    *,
    start_index: int = 0,
    headers: list[tuple[str, bytes]] | None = None,
) -> list[asyncio.Future[Any]]:
    """Append ``records`` to one batch per partition (a new one when full) and send; return the futures."""
    by_part: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for i, (key, value) in enumerate(records, start_index):
        by_part.setdefault(partition_of(key, partitions, i), []).append((key, value))
    hdrs = headers or []
    futures: list[asyncio.Future[Any]] = []
    for part, recs in by_part.items():
        batch = prod.create_batch()
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None, headers=hdrs) is None:
                futures.append(await prod.send_batch(batch, topic, partition=part))
                batch = prod.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=hdrs)
        if batch.record_count():
            futures.append(await prod.send_batch(batch, topic, partition=part))
    return futures


async def produce_all(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]], partitions: int, *,
    idempotent: bool, chunk: int = 20_000,
) -> float:
    """Write every record to ``topic`` (keyed partitioning, batch API); return the seconds it took."""
    prod = producer(bootstrap, idempotent=idempotent, max_batch_size=1024 * 1024,
                    max_request_size=4 * 1024 * 1024, linger_ms=20)
    await prod.start()
    try:
        t0 = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for start in range(0, len(records), chunk):
            pending.extend(await send_records(prod, topic, records[start : start + chunk], partitions,
                                              start_index=start))
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return time.perf_counter() - t0
    finally:
        await prod.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


class GroupOffsets:
    """Reads a consumer group's committed offsets on some topics (a consumer that never joins the group)."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self.group = group
        self.topics = list(topics)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                          enable_auto_commit=False)
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._tps = [TopicPartition(t, p) for t in self.topics
                     for p in sorted(await _partitions(self._consumer, t))]

    async def committed(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in self._tps:
            off = await self._consumer.committed(tp)
            if off is not None and off >= 0:
                out[tp] = off
        return out

    async def close(self) -> None:
        await self._consumer.stop()


@dataclass(frozen=True, slots=True)
class Span:
    """Records on some topics and the broker timestamps of the first and the last one."""

    records: int
    first_ms: int
    last_ms: int

    @property
    def seconds(self) -> float:
        return max(0.001, (self.last_ms - self.first_ms) / 1000)


async def _read_from(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, end: int,
                     first_only: bool) -> list[Any]:
    """Records of ``tp`` from ``offset``: the first one only, or up to ``end`` (the end offset the broker
    reported, and whatever the batch holding ``end - 1`` has past it), or until two polls find nothing."""
    consumer.seek(tp, offset)
    out: list[Any] = []
    empty = 0
    while empty < 2:
        got = await consumer.getmany(tp, timeout_ms=300, max_records=1 if first_only else 10_000)
        recs = got.get(tp, [])
        if not recs:
            empty += 1
            continue
        out.extend(recs)
        if first_only or out[-1].offset + 1 >= end:
            break
    return out


async def timestamp_span(bootstrap: str, topics: Sequence[str], exact: bool = False) -> Span:
    """How many records ``topics`` hold, and the earliest first / latest last record timestamp.

    tansu reports the end offset of a partition as the base offset of its last batch plus one, so the last
    records are found by reading from there: the whole last batch comes back (Apache Kafka's end offset is
    exact: the last record alone). A transactional topic ends in a commit marker, which takes an offset and is
    never returned: the tail is looked for further back, and ``exact`` counts the records by reading them all
    (offsets also count the markers).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(await _partitions(consumer, t))]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        live = [tp for tp in tps if ends[tp] > begins[tp]]
        if not live:
            return Span(0, 0, 0)
        consumer.assign(live)
        firsts: list[int] = []
        lasts: list[int] = []
        total = 0
        for tp in live:
            first = await _read_from(consumer, tp, begins[tp], ends[tp], True)
            if first:
                firsts.append(first[0].timestamp)
            if exact:
                tail = await _read_from(consumer, tp, begins[tp], ends[tp], False)
                total += len(tail)
            else:
                back = 1
                tail = []
                while not tail:
                    start = max(begins[tp], ends[tp] - back)
                    tail = await _read_from(consumer, tp, start, ends[tp], False)
                    if start == begins[tp]:
                        break
                    back *= 8
                if tail:
                    total += tail[-1].offset + 1 - begins[tp]
            if tail:
                lasts.append(max(r.timestamp for r in tail))
        if not firsts or not lasts:
            return Span(total, 0, 0)
        return Span(total, min(firsts), max(lasts))
    finally:
        await consumer.stop()
