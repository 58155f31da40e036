"""Kafka helpers for tests and tools: produce raw bodies, collect routed output, read committed offsets."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.sinks.kafka import decode_record
from testbed.waiting import ConditionNotReached, wait_for


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, bytes]
    event: dict[str, Any] | None  # the decoded CloudEvent (None for dead letters)
    value: bytes | None


async def produce(
    bootstrap: str,
    topic: str,
    bodies: Sequence[bytes],
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[list[tuple[str, bytes]]] | None = None,
) -> None:
    """Produce every body (with its key/headers) and wait until all are acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futs = []
        for i, body in enumerate(bodies):
            futs.append(
                await producer.send(
                    topic, body, key=keys[i] if keys else None, headers=headers[i] if headers else None
                )
            )
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def collect(
    bootstrap: str,
    topics: Sequence[str],
    until: int,
    timeout: float = 60.0,
    settle: float = 0.5,
    dead_topics: Sequence[str] = (),
) -> list[OutRecord]:
    """Read ``topics`` from the beginning until ``until`` records arrived (or ``timeout``), then ``settle``
    seconds more to catch anything extra (duplicates would show up there)."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"collect-{uuid.uuid4().hex[:10]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[OutRecord] = []
    try:
        deadline = time.monotonic() + timeout
        extra_until: float | None = None
        while True:
            now = time.monotonic()
            if extra_until is None and (len(out) >= until or now > deadline):
                extra_until = now + settle
            if extra_until is not None and now > extra_until:
                break
            got = await consumer.getmany(timeout_ms=200)
            for tp, records in got.items():
                for r in records:
                    hdrs = {k: v for k, v in (r.headers or [])}
                    ev = None if tp.topic in dead_topics else decode_record(r.value, hdrs)
                    out.append(
                        OutRecord(
                            tp.topic,
                            tp.partition,
                            r.offset,
                            r.key.decode() if r.key else None,
                            hdrs,
                            ev,
                            r.value,
                        )
                    )
    finally:
        await consumer.stop()
    return out


async def collect_all_events(
    bootstrap: str, topics: Sequence[str], events: int, within: float, timeout: float = 10.0, settle: float = 1.0
) -> list[OutRecord]:
    """Read ``topics`` from the beginning again and again until ``events`` distinct event ids are out, or
    ``within`` seconds passed: the records of the last read either way (the caller's assertions say what is
    missing or duplicated)."""
    last: list[OutRecord] = []

    async def every_event_out() -> bool:
        nonlocal last
        last = await collect(bootstrap, topics, until=events, timeout=timeout, settle=settle)
        return len({r.event["id"] for r in last if r.event}) >= events

    with contextlib.suppress(ConditionNotReached):
        await wait_for(every_event_out, within=within, every=0)
    return last


async def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offset per partition for ``group``, end offset per partition) of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or set())
        if not parts:
            await consumer._client.force_metadata_update()
            parts = sorted(consumer.partitions_for_topic(topic) or set())
        tps = [TopicPartition(topic, p) for p in parts]
        committed = {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}
        ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return committed, ends


async def produce_fast(
    bootstrap: str, topic: str, bodies: Sequence[bytes], keys: Sequence[bytes] | None = None
) -> None:
    """Produce many records quickly (one await per 1,000 sends); for backlogs."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=20, max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        for start in range(0, len(bodies), 1000):
            futs = [
                await producer.send(topic, body, key=keys[start + i] if keys else None)
                for i, body in enumerate(bodies[start : start + 1000])
            ]
            await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def ids_on(bootstrap: str, topic: str, expected: int, timeout: float = 120.0, settle: float = 1.0) -> list[bytes]:
    """The ``ce_id`` header of every record of ``topic`` (read from the beginning until ``expected`` records, or
    ``timeout``, plus ``settle`` seconds); values are not decoded, so large topics read fast."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"ids-{uuid.uuid4().hex[:10]}",
        enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        extra_until: float | None = None
        while True:
            now = time.monotonic()
            if extra_until is None and (len(out) >= expected or now > deadline):
                extra_until = now + settle
            if extra_until is not None and now > extra_until:
                break
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(dict(r.headers or []).get("ce_id", b"") for r in records)
    finally:
        await consumer.stop()
    return out
