"""Reading one Kafka topic from a start to where it ended when the reading began, and never further.

``bridge state`` reads the state topic this way, ``bridge redrive`` the dead-letter topic (so it never reads
the dead letters it writes itself). No consumer group: all partitions are assigned, nothing is committed. The
start is the beginning of each partition, or the first offset at or after ``since`` (``offsets_for_times``).
``TopicMissing`` when the topic does not exist (a metadata request for all topics never auto-creates one).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bridge.kafka_common import KafkaClientSettings


class TopicMissing(RuntimeError):
    """The topic to read does not exist."""


class TopicRange:
    """Reads ``topic`` from the start to its end offsets at ``__aenter__`` (see the module docstring)."""

    def __init__(self, settings: KafkaClientSettings, topic: str, *, since: float | None = None,
                 idle_timeout: float = 60.0) -> None:
        self.settings = settings
        self.topic = topic
        self.since = since
        self.idle_timeout = idle_timeout
        self.start: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.read = 0
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def total(self) -> int:
        """Records between the start and the end (what ``chunks`` yields, on a topic nothing deletes from)."""
        return sum(max(0, self.end[tp] - self.start[tp]) for tp in self.end)

    async def __aenter__(self) -> Self:
        kwargs: dict[str, Any] = self.settings.client_kwargs()
        consumer = AIOKafkaConsumer(**kwargs, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
        self._consumer = consumer
        try:
            await consumer.start()
            cluster = await consumer._client.fetch_all_metadata()  # every topic: never auto-creates one
            if self.topic not in cluster.topics():
                raise TopicMissing(f"topic {self.topic} does not exist on {self.settings.bootstrap_servers}")
            numbers = sorted(cluster.partitions_for_topic(self.topic) or ())
            partitions = [TopicPartition(self.topic, p) for p in numbers]
            consumer.assign(partitions)
            self.end = await consumer.end_offsets(partitions)
            begin = await consumer.beginning_offsets(partitions)
            self.start = dict(begin)
            if self.since is not None:
                found = await consumer.offsets_for_times({tp: int(self.since * 1000) for tp in partitions})
                for tp in partitions:
                    hit = found.get(tp)
                    self.start[tp] = max(begin[tp], hit.offset) if hit is not None else self.end[tp]
            for tp in partitions:
                consumer.seek(tp, self.start[tp])
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def chunks(self, max_records: int = 1000) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """Records in chunks, per partition in offset order, until every partition reached its end."""
        consumer = self._consumer
        assert consumer is not None, "use 'async with TopicRange(...)'"
        pending = {tp for tp, end in self.end.items() if self.start[tp] < end}
        idle_since = time.monotonic()
        while pending:
            got = await consumer.getmany(*pending, timeout_ms=500, max_records=max_records)
            chunk: list[ConsumerRecord[bytes, bytes]] = []
            for tp, records in got.items():
                end = self.end[tp]
                chunk.extend(r for r in records if r.offset < end)
            for tp in list(pending):
                if await consumer.position(tp) >= self.end[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if chunk:
                self.read += len(chunk)
                idle_since = time.monotonic()
                yield chunk
            elif time.monotonic() - idle_since > self.idle_timeout:
                left = {f"{tp.partition}": self.end[tp] - await consumer.position(tp) for tp in pending}
                raise TimeoutError(f"no records from {self.topic} for {self.idle_timeout:g} s; left per partition: "
                                   f"{left}")


def client_settings(sink: object | None, bootstrap: str | None) -> KafkaClientSettings:
    """The Kafka connection of a tool: the config's sink when it is a Kafka sink (TLS, SASL included), its bootstrap
    servers replaced by ``--bootstrap-servers`` when given; else ``--bootstrap-servers`` or localhost:9092."""
    if not isinstance(sink, KafkaClientSettings):
        return KafkaClientSettings(bootstrap_servers=bootstrap or "localhost:9092")
    base = KafkaClientSettings.model_validate(
        {k: getattr(sink, k) for k in KafkaClientSettings.model_fields}
    )
    return base.model_copy(update={"bootstrap_servers": bootstrap}) if bootstrap else base
