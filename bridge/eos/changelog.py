"""The changelog topic of exactly-once delivery: the durable state of each lane, written in its transactions.

One compacted topic per Kafka source (``<group_id>.bridge-changelog`` unless ``delivery.changelog_topic`` says
otherwise), as many partitions as the source's topics have at most: the state of input partition ``p`` of topic
``t`` lives in changelog partition ``p``, every key starting with a kind byte and ``t``:

- ``I<t>\\0<unique>``: the ids dedup recorded in one transaction (value: JSON ``{source: [id, ...]}``; the record's
  timestamp is when). Expired ids (older than the dedup window) are deleted with a tombstone by a later
  transaction of the lane, so compaction removes them;
- ``Q<t>\\0<source>\\0<subject>``: the last sequence emitted for the subject (value: the sequence);
- ``P<t>\\0<key>``: an entry of the pipeline's plug-in (``GroupPlan.changes``; value as the plug-in wrote it).

``restore`` reads the lanes' partitions ``read_committed`` from the beginning to their end (the last stable
offset) and gives the ``DurableState`` (later entries of a key win; ids with their age) plus the expired id keys.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.kafka_common import KafkaClientSettings
from bridge.pipeline.dedup import DedupKey
from bridge.pipeline.transactions import DurableState, LaneChanges

log = structlog.get_logger("bridge.eos")

IDS, SEQ, PLUGIN = b"I", b"Q", b"P"
_counter = itertools.count()


def changelog_topic(group_id: str, configured: str | None = None) -> str:
    return configured or f"{group_id}.bridge-changelog"


def entries(input_topic: str, changes: LaneChanges,
            tombstones: Sequence[bytes] = ()) -> tuple[list[tuple[bytes, bytes | None]], bytes | None]:
    """The changelog entries (key, value; ``None``: a tombstone) of one lane's changes, and the key of the id
    batch among them (to delete once it expires), or None."""
    tag = input_topic.encode()
    out: list[tuple[bytes, bytes | None]] = []
    ids_key: bytes | None = None
    if changes.ids:
        by_source: dict[str, list[str]] = {}
        for source, event_id in changes.ids:
            by_source.setdefault(source, []).append(event_id)
        ids_key = IDS + tag + b"\x00" + f"{time.time_ns():x}-{next(_counter):x}".encode()
        out.append((ids_key, orjson.dumps(by_source)))
    for (source, subject), seq in changes.seqs.items():
        out.append((SEQ + tag + b"\x00" + source.encode() + b"\x00" + subject.encode(), seq.encode()))
    for key, value in changes.plugin:
        out.append((PLUGIN + tag + b"\x00" + key, value))
    out.extend((key, None) for key in tombstones)
    return out, ids_key


@dataclass(slots=True)
class Restored:
    """What ``restore`` read: the state, the id batches still live (key, write time) and the expired ones."""

    state: DurableState = field(default_factory=DurableState)
    live: dict[tuple[str, int], list[tuple[float, bytes]]] = field(default_factory=dict)
    expired: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    records: int = 0
    seconds: float = 0.0


async def restore(settings: KafkaClientSettings, topic: str, lanes: Iterable[tuple[str, int]],
                  window_seconds: float, *, idle_timeout: float = 60.0) -> Restored:
    """Read the changelog partitions of ``lanes`` ((input topic, partition)); see the module docstring."""
    t0 = time.monotonic()
    wanted: dict[int, set[bytes]] = {}
    for input_topic, partition in lanes:
        wanted.setdefault(partition, set()).add(input_topic.encode())
    out = Restored()
    if not wanted:
        return out
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(wanted)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        ids: dict[bytes, tuple[float, dict[str, list[str]], tuple[str, int]]] = {}
        seqs: dict[tuple[str, str], str] = {}
        plugin: dict[bytes, bytes] = {}
        now = time.time()
        idle_since = time.monotonic()
        while pending:
            got = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
            for tp, batch in got.items():
                tags = wanted[tp.partition]
                for r in batch:
                    if r.offset >= ends[tp] or r.key is None:
                        continue
                    kind, rest = r.key[:1], r.key[1:]
                    tag, _, tail = rest.partition(b"\x00")
                    if tag not in tags:
                        continue
                    out.records += 1
                    if kind == IDS:
                        if r.value is not None:
                            ids[r.key] = (r.timestamp / 1000.0, orjson.loads(r.value), (tag.decode(), tp.partition))
                        else:
                            ids.pop(r.key, None)
                    elif kind == SEQ:
                        source, _, subject = tail.partition(b"\x00")
                        seqs[(source.decode(), subject.decode())] = (r.value or b"").decode()
                    elif kind == PLUGIN:
                        plugin[tail] = r.value or b""
            if got:
                idle_since = time.monotonic()
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if pending and time.monotonic() - idle_since > idle_timeout:
                raise TimeoutError(f"changelog {topic}: no records for {idle_timeout:g} s before its end")
        batches: list[tuple[float, list[DedupKey]]] = []
        for key, (when, by_source, lane) in sorted(ids.items(), key=lambda kv: kv[1][0]):
            age = now - when
            if age > window_seconds:
                out.expired.setdefault(lane, []).append(key)
                continue
            out.live.setdefault(lane, []).append((when, key))
            batches.append((age, [(s, i) for s, id_list in by_source.items() for i in id_list]))
        out.state = DurableState(batches, seqs, list(plugin.items()))
    finally:
        await consumer.stop()
    out.seconds = time.monotonic() - t0
    return out
