"""Kafka sink: publishes records with aiokafka's batch API.

``publish`` takes ``OutRecord``s already encoded by the pipeline (at admission, with this sink's ``encoder``:
the CloudEvents Kafka protocol binding of ``bridge.sinks.encoding``, binary or structured mode), picks the
partition like the default partitioner (murmur2 of the key; records without key go, per call, to one randomly
chosen partition), groups records by (topic, partition) preserving their order, fills
``producer.create_batch()`` builders, hands them to ``send_batch`` and awaits all the delivery futures
together: no per-record await. It returns only when the broker acknowledged every record and raises
``KafkaPublishError`` otherwise (``permanent`` when retrying cannot help: a record over ``max_request_bytes``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from pydantic import Field, model_validator

from bridge.aio import completed
from bridge.kafka_common import KafkaClientSettings
from bridge.model import Header, OutRecord, Probe, PublishError
from bridge.retry import PUBLISH
from bridge.sinks.encoding import (
    STRUCTURED_CONTENT_TYPE,
    BinaryEncoder,
    StructuredEncoder,
    ce_headers,
    decode_record,
    encoder_for,
)
from bridge.sinks.registry import SinkConnector, register

__all__ = [
    "STRUCTURED_CONTENT_TYPE",
    "KafkaPublishError",
    "KafkaSink",
    "KafkaSinkConfig",
    "ce_headers",
    "decode_record",
]

log = structlog.get_logger(__name__)

_Record = tuple[bytes | None, bytes, list[Header]]
_T = TypeVar("_T")
_default_partitioner = DefaultPartitioner()
_partition_memo: dict[tuple[bytes, int], int] = {}


def _partitioner(key: bytes, partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2 of the key), memoized: keys are subjects, which repeat."""
    memo_key = (key, len(partitions))
    found = _partition_memo.get(memo_key)
    if found is None:
        found = _default_partitioner(key, partitions, available)
        if len(_partition_memo) >= 200_000:
            _partition_memo.clear()
        _partition_memo[memo_key] = found
    return found


class KafkaPublishError(PublishError):
    """Some records of a ``publish`` call were not acknowledged by the broker."""

    def __init__(self, message: str, errors: Sequence[BaseException], *, permanent: bool = False) -> None:
        permanent = permanent or (bool(errors) and all(not getattr(e, "retriable", True) for e in errors))
        super().__init__(message, permanent=permanent)
        self.errors = list(errors)


class _Handover:
    """Hands one group's batches to the producer, waiting out a broker that cannot take them yet.

    Before a batch is in the producer's queue nothing of it was sent, so a transient failure there (no metadata
    for the topic yet, no room in the partition's queue within the request timeout: a broker restarting, a topic
    being created, a leader moving) is waited out with backoff instead of failing the group: the batches already
    handed over stay where they are, so nothing is written twice and each partition keeps the order of the
    group. Errors that retrying cannot help (``retriable`` false, other than the producer's own timeout) raise."""

    __slots__ = ("_retries", "_sink", "_waiting")

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._retries = PUBLISH.retries()
        self._waiting = False

    async def send(self, producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        return await self.retrying(lambda: producer.send_batch(batch, topic, partition=partition))

    async def retrying(self, step: Callable[[], Awaitable[_T]]) -> _T:
        while True:
            try:
                result = await step()
            except (KafkaTimeoutError, KafkaConnectionError, NotLeaderForPartitionError, LeaderNotAvailableError,
                    UnknownTopicOrPartitionError, RequestTimedOutError, NodeNotReadyError) as exc:
                delay = self._retries.failed()
                if not self._waiting or self._retries.failures % 20 == 0:
                    log.warning("kafka.handover_waiting", sink=self._sink, attempt=self._retries.failures,
                                retry_in=round(delay, 2), error=f"{type(exc).__name__}: {exc}")
                self._waiting = True
                await asyncio.sleep(delay)
                continue
            if self._waiting:
                log.info("kafka.handover_resumed", sink=self._sink, attempts=self._retries.failures)
                self._waiting = False
                self._retries.succeeded()
            return result


class KafkaSinkConfig(KafkaClientSettings):
    """Configuration of the Kafka sink (connection/security fields come from ``KafkaClientSettings``)."""

    type: Literal["kafka"] = Field("kafka", description="sink type")
    name: str = Field("kafka", description="sink name (logs)")
    mode: Literal["binary", "structured"] = Field(
        "binary",
        description="CloudEvents Kafka binding: binary = attributes in ce_* headers, data as the value; structured "
        "= the whole event as a JSON value",
    )
    linger_ms: int = Field(0, ge=0, description="0: the pipeline already hands over whole batches")
    max_inflight_groups: int = Field(
        1, ge=1, le=16,
        description="publish groups handed to the producer before the oldest is confirmed (throughput and latency "
        "at the broker's round trip); 1 keeps per-subject order across groups even when a group fails for good "
        "after the producer's retries (docs/operations.md)",
    )
    max_batch_bytes: int = Field(512 * 1024, ge=1024, description="bytes of one producer batch (per partition)")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024,
        description="largest record published (keep it at or below the broker's message.max.bytes); an event "
        "larger than this is dead-lettered, a dead letter is cut to fit",
    )
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        None, description="producer compression of record batches (none by default)"
    )
    acks: Literal["all", 1, 0] = Field(
        "all",
        description="all: every in-sync replica confirms a record before its source position is released (at least "
        "once); 1: the leader only; 0: no confirmation (events may be lost)",
    )
    enable_idempotence: bool = Field(
        True,
        description="idempotent producer, Kafka's own default since 3.0 (the broker drops the copies a producer "
        "retry would write, and keeps each partition's records in the order they were sent); needs acks all; "
        "turn off only for a broker without it",
    )


    @model_validator(mode="after")
    def _idempotence_needs_acks_all(self) -> KafkaSinkConfig:
        if self.enable_idempotence and self.acks != "all":
            raise ValueError(f"enable_idempotence needs acks all (got acks {self.acks}); set enable_idempotence: false "
                             "to publish with fewer acknowledgements")
        return self


class KafkaSink:
    """Publishes encoded records (routed events and dead letters) to Kafka; see the module docstring."""

    def __init__(self, config: KafkaSinkConfig, **client_overrides: Any) -> None:
        self.config = config
        self.name = config.name
        self._client_overrides = client_overrides
        self._producer: AIOKafkaProducer | None = None
        self._encoder = encoder_for(config.mode, self.max_record_bytes)

    @property
    def max_record_bytes(self) -> int:
        """The largest record this sink publishes (``max_request_bytes``; a record larger than a batch gets a
        batch of its own)."""
        return self.config.max_request_bytes

    @property
    def encoder(self) -> BinaryEncoder | StructuredEncoder:
        return self._encoder

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def probe(self) -> Probe | None:
        """Cluster metadata through the producer's client, once started."""
        return self._producer.client.fetch_all_metadata if self._producer is not None else None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"Kafka sink {self.name} is not started")
        return self._producer

    async def start(self) -> None:
        cfg = self.config
        kwargs = cfg.client_kwargs()
        kwargs.update(
            acks=cfg.acks,
            linger_ms=cfg.linger_ms,
            max_batch_size=cfg.max_batch_bytes,
            max_request_size=max(cfg.max_request_bytes, cfg.max_batch_bytes + 1024),
            compression_type=cfg.compression_type,
            enable_idempotence=cfg.enable_idempotence,
        )
        kwargs.update(self._client_overrides)
        producer = AIOKafkaProducer(**kwargs)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # release its connections before the caller retries
            raise
        self._producer = producer
        log.info("kafka.sink_started", sink=self.name, mode=cfg.mode)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        log.info("kafka.sink_stopped", sink=self.name)

    async def publish(self, records: Sequence[OutRecord]) -> None:
        await (await self.enqueue(records))

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        """Append the records to the producer's batches (per partition, in order) and return the awaitable of
        their acknowledgements; a record the broker can never take raises at once (``permanent``)."""
        if not records:
            return completed()
        producer = self.producer
        by_topic: dict[str, list[_Record]] = {}
        limit = self.config.max_request_bytes
        for _, topic, key, value, headers in records:
            if len(value) > limit:  # the broker would refuse it (message.max.bytes): retrying cannot help
                size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
                msg = f"record of {size} bytes exceeds max_request_bytes ({limit}) for topic {topic}"
                raise KafkaPublishError(msg, [], permanent=True)
            group = by_topic.get(topic)
            if group is None:
                group = by_topic[topic] = []
            group.append((key, value, headers))

        futures: list[asyncio.Future[Any]] = []
        hand = _Handover(self.name)
        try:
            groups = await hand.retrying(lambda: self._group(producer, by_topic))
            for (topic, partition), group_records in groups.items():
                batch = producer.create_batch()
                for key, value, headers in group_records:
                    if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                        futures.append(await hand.send(producer, batch, topic, partition))
                        batch = producer.create_batch()
                        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                            msg = f"record of {len(value)} bytes does not fit a batch (max_batch_bytes)"
                            raise KafkaPublishError(msg, [], permanent=True)
                if batch.record_count():
                    futures.append(await hand.send(producer, batch, topic, partition))
        except Exception as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            log.error("kafka.publish_failed", sink=self.name, error=repr(exc))
            if isinstance(exc, KafkaPublishError):
                raise
            raise KafkaPublishError(f"publish failed: {exc!r}", [exc]) from exc
        return asyncio.ensure_future(self._confirmed(futures))

    async def _confirmed(self, futures: list[asyncio.Future[Any]]) -> None:
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            log.error(
                "kafka.publish_failed", sink=self.name, failed_batches=len(errors), error=repr(errors[0])
            )
            raise KafkaPublishError(
                f"{len(errors)} of {len(futures)} batches not acknowledged: {errors[0]!r}", errors
            )

    @staticmethod
    async def _group(
        producer: AIOKafkaProducer, by_topic: Mapping[str, list[_Record]]
    ) -> dict[tuple[str, int], list[_Record]]:
        """Records grouped by (topic, partition) in arrival order, partition chosen from the key."""
        groups: dict[tuple[str, int], list[_Record]] = {}
        for topic, records in by_topic.items():
            partitions = sorted(await producer.partitions_for(topic))
            if not partitions:
                raise KafkaPublishError(f"topic {topic} has no partitions", [])
            available = sorted(producer.client.cluster.available_partitions_for_topic(topic)) or partitions
            sticky = random.choice(available)  # records without key: one partition per call and topic
            for record in records:
                key = record[0]
                partition = _partitioner(key, partitions, available) if key is not None else sticky
                groups.setdefault((topic, partition), []).append(record)
        return groups


CONNECTOR = register(SinkConnector(
    tag="kafka",
    config=KafkaSinkConfig,
    build=KafkaSink,
    summary="Kafka producer for routed events and dead letters (the sink of `bridge run` when `type` is not given).",
))
