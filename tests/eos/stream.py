"""Shared by the exactly-once tests: an input stream with duplicates, disorder and malformed messages, a
``read_committed`` reader of the output, and the counts that say whether every event came out exactly once."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import committed_and_end


@dataclass(slots=True)
class Stream:
    """What was produced: (key, body) in order; the unique event ids; how many copies and malformed messages."""

    messages: list[tuple[bytes, bytes]]
    ids: set[str]
    failed: set[str]
    duplicates: int
    malformed: int


def ml_stream(n: int, subjects: int = 500, *, dup_every: int = 20, swap: float = 0.05, bad_every: int = 1000,
              seed: int = 7) -> Stream:
    """``n`` SageMaker training-job events over ``subjects`` jobs, keyed by subject, in per-job sequence order,
    then: every ``dup_every``-th event again a little later (same key: upstream copies share a partition), about
    ``swap`` of neighbours swapped (local disorder, which the reorder buffer puts right), and a malformed message
    every ``bad_every`` (dead-lettered)."""
    rnd = random.Random(seed)
    events = [sagemaker_training_event(f"e{i}", f"job{i % subjects}", i // subjects,
                                       "Failed" if i % 97 == 0 else "InProgress") for i in range(n)]
    stream = [(e["resources"][0].encode(), orjson.dumps(e)) for e in events]
    copies = 0
    for i in range(0, n, dup_every):
        stream.insert(min(len(stream), i + copies + rnd.randint(1, 3000)), stream[i + copies])
        copies += 1
    for i in range(len(stream) - 1):
        if rnd.random() < swap:
            stream[i], stream[i + 1] = stream[i + 1], stream[i]
    bad = 0
    for i in range(0, len(stream), bad_every):
        stream.insert(i, (b"malformed", b'{"not json %d' % i))
        bad += 1
    failed = {f"e{i}" for i in range(n) if i % 97 == 0}
    return Stream(stream, {f"e{i}" for i in range(n)}, failed, copies, bad)


async def read_committed(bootstrap: str, topics: Sequence[str], want: int, timeout: float = 120.0,
                         settle: float = 2.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` a ``read_committed`` consumer sees (from the beginning, until ``want`` arrived
    or ``timeout``, then ``settle`` seconds more: copies would show up there)."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed", group_id=f"verify-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        extra: float | None = None
        while True:
            now = time.monotonic()
            if extra is None and (len(out) >= want or now > deadline):
                extra = now + settle
            if extra is not None and now > extra:
                return out
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
    finally:
        await consumer.stop()


async def drained(bootstrap: str, group: str, topic: str, within: float = 180.0) -> None:
    """Wait until ``group`` committed every partition of ``topic`` to its end (the bridge caught up)."""
    deadline = time.monotonic() + within
    while True:
        committed, ends = await committed_and_end(bootstrap, group, topic)
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not drained within {within:g} s: committed {committed}, ends {ends}")
        await asyncio.sleep(0.5)


@dataclass(slots=True)
class Tally:
    """Counts over what one route published."""

    records: int = 0
    unique: int = 0
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: int = 0
    inversions: int = 0
    late: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "unique": self.unique, "duplicates": self.duplicates,
                "lost": len(self.lost), "unexpected": self.unexpected, "inversions": self.inversions,
                "late": self.late}


def tally(records: Sequence[ConsumerRecord[bytes, bytes]], expected: set[str]) -> Tally:
    """Duplicates, losses and per-subject inversions (per output partition, late events aside) of a route."""
    ids = Counter(dict(r.headers or [])["ce_id"].decode() for r in records)
    out = Tally(records=len(records), unique=len(ids), duplicates=sum(n - 1 for n in ids.values()),
                lost=sorted(expected - set(ids)), unexpected=len(set(ids) - expected))
    last: dict[tuple[int, bytes | None], bytes] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        headers = dict(r.headers or [])
        if headers.get("ce_late") == b"true":
            out.late += 1
            continue
        key = (r.partition, r.key)
        seq = headers["ce_sequence"]
        if key in last and seq < last[key]:
            out.inversions += 1
        last[key] = seq
    return out
