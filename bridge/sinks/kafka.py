"""Kafka sink: publishes records with aiokafka's batch API.

``publish`` takes ``OutRecord``s already encoded by the pipeline (at admission, with this sink's ``encoder``:
the CloudEvents Kafka protocol binding of ``bridge.sinks.encoding``, binary or structured mode), picks the
partition like the default partitioner (murmur2 of the key; records without key go, per call, to one randomly
chosen partition), groups records by (topic, partition) preserving their order, fills
``producer.create_batch()`` builders, hands them to ``send_batch`` and awaits all the delivery futures
together: no per-record await. It returns only when the broker acknowledged every record and raises
``KafkaPublishError`` otherwise, naming the records not acknowledged (``unconfirmed``); ``permanent`` when retrying
cannot help (``bridge.sinks.kafka_errors``: a record over ``max_request_bytes``, invalid, not authorized). After a
batch failed the producer is replaced before anything more is sent (``recover``): aiokafka's producer keeps
sequence numbers the broker no longer agrees with, and a new one must not overtake what the old one still holds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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

from bridge.aio import completed, reraise_if_cancelled
from bridge.kafka_common import KafkaClientSettings
from bridge.model import OutRecord, Probe, PublishError
from bridge.retry import PUBLISH
from bridge.sinks.encoding import (
    STRUCTURED_CONTENT_TYPE,
    BinaryEncoder,
    StructuredEncoder,
    ce_headers,
    decode_record,
    encoder_for,
)
from bridge.sinks.kafka_errors import is_permanent
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

_Span = tuple["asyncio.Future[Any]", tuple[str, int], int, int]
"""One batch handed to the producer: its future, (topic, partition), and the slice of that partition's records."""
_T = TypeVar("_T")
_STOP_TIMEOUT = 10.0
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
    """Some records of a ``publish`` call were not acknowledged by the broker; ``permanent`` when one of the
    errors is (``bridge.sinks.kafka_errors.is_permanent``)."""

    def __init__(self, message: str, errors: Sequence[BaseException], *, permanent: bool = False,
                 unconfirmed: Sequence[OutRecord] | None = None) -> None:
        permanent = permanent or any(is_permanent(e) for e in errors)
        super().__init__(message, permanent=permanent, unconfirmed=unconfirmed)
        self.errors = list(errors)


class _Handover:
    """Hands one group's batches to the producer, waiting out a broker that cannot take them yet.

    Before a batch is in the producer's queue nothing of it was sent, so a transient failure there (no metadata
    for the topic yet, no room in the partition's queue within the request timeout: a broker restarting, a topic
    being created, a leader moving) is waited out with backoff instead of failing the group: the batches already
    handed over stay where they are, so nothing is written twice and each partition keeps the order of the
    group. It stops waiting when a batch already handed over failed (the producer must be replaced first: the
    rest of the group is then unconfirmed); other errors raise."""

    __slots__ = ("_retries", "_sink", "_waiting")

    def __init__(self, sink: KafkaSink) -> None:
        self._sink = sink
        self._retries = PUBLISH.retries()
        self._waiting = False

    async def send(self, producer: AIOKafkaProducer, batch: Any, tp: tuple[str, int]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = await self.retrying(lambda: producer.send_batch(batch, tp[0], partition=tp[1]))
        self._sink._track(fut)
        return fut

    async def retrying(self, step: Callable[[], Awaitable[_T]]) -> _T:
        sink = self._sink
        while True:
            if sink.broken is not None:
                raise _Unsent(sink.broken)
            try:
                result = await step()
            except (KafkaTimeoutError, KafkaConnectionError, NotLeaderForPartitionError, LeaderNotAvailableError,
                    UnknownTopicOrPartitionError, RequestTimedOutError, NodeNotReadyError) as exc:
                delay = self._retries.failed()
                if not self._waiting or self._retries.failures % 20 == 0:
                    log.warning("kafka.handover_waiting", sink=sink.name, attempt=self._retries.failures,
                                retry_in=round(delay, 2), error=f"{type(exc).__name__}: {exc}")
                self._waiting = True
                await asyncio.sleep(delay)
                continue
            if self._waiting:
                log.info("kafka.handover_resumed", sink=sink.name, attempts=self._retries.failures)
                self._waiting = False
                self._retries.succeeded()
            return result


class _Unsent(Exception):
    """The handover stopped: a batch handed over earlier failed, and the producer is to be replaced."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"not handed over: the producer failed a batch ({cause!r}) and is being replaced")
        self.cause = cause


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
        "at the broker's round trip); 1 keeps per-subject order across groups even across a broker failure without "
        "the idempotent producer (docs/operations.md)",
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
        self._pending: set[asyncio.Future[Any]] = set()  # batches handed over and not resolved yet
        self._broken: BaseException | None = None
        self._generation = 0  # of the producer: a late callback of a replaced one marks nothing
        self._recovering = asyncio.Lock()
        self.producer_replacements = 0
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
        producer = AIOKafkaProducer(**self.producer_kwargs())
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # release its connections before the caller retries
            raise
        self._producer = producer
        log.info("kafka.sink_started", sink=self.name, mode=self.config.mode)

    def producer_kwargs(self) -> dict[str, Any]:
        """The producer's settings (also those of exactly-once delivery's transactional producers)."""
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
        return kwargs

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        log.info("kafka.sink_stopped", sink=self.name)

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Publish and wait for the broker's acknowledgements; after a failed batch the producer is replaced first
        (``recover``)."""
        if self._broken is not None:
            await self.recover()
        await (await self.enqueue(records))

    @property
    def broken(self) -> BaseException | None:
        """The first failure of a batch since the producer was started: set, nothing more is handed to this
        producer, and ``publish`` replaces it first."""
        return self._broken

    async def recover(self) -> None:
        """Replace the producer after a batch failed: wait until every batch in flight resolved (the old producer
        keeps retrying what it may still write: nothing of it may land after what is re-sent), stop it, start a new
        one (a new producer id: the broker's sequence numbers of the old one no longer matter). Raises what the new
        producer's start raises, e.g. the broker still down: the caller retries later."""
        async with self._recovering:
            if self._broken is None:
                return
            if self._pending:
                log.warning("kafka.producer_draining", sink=self.name, batches=len(self._pending),
                            error=repr(self._broken))
                await asyncio.wait(set(self._pending))
            old, self._producer = self._producer, None
            self._generation += 1
            if old is not None:
                try:
                    await asyncio.wait_for(old.stop(), _STOP_TIMEOUT)
                except (asyncio.CancelledError, Exception) as exc:
                    reraise_if_cancelled(exc)
                    log.warning("kafka.producer_stop_failed", sink=self.name, error=repr(exc))
            await self.start()
            self.producer_replacements += 1
            log.warning("kafka.producer_replaced", sink=self.name, after=repr(self._broken))
            self._broken = None

    def _track(self, fut: asyncio.Future[Any]) -> None:
        """Keep a handed-over batch's future until it resolves; its failure marks the producer broken."""
        self._pending.add(fut)
        generation = self._generation

        def settled(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            error = asyncio.CancelledError() if f.cancelled() else f.exception()
            if error is not None and self._broken is None and generation == self._generation:
                self._broken = error

        fut.add_done_callback(settled)

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        """Append the records to the producer's batches (per partition, in order) and return the awaitable of
        their acknowledgements; a record the broker can never take raises at once (``permanent``). A failure names
        the records not acknowledged (``unconfirmed``): per partition, from the first failed batch on."""
        if not records:
            return completed()
        if self._broken is not None:  # nothing more for a producer that failed a batch: it is replaced first
            raise self._failure(records, {}, [], [_Unsent(self._broken)])
        producer = self.producer
        by_topic = self._by_topic(records)
        spans: list[_Span] = []
        groups: dict[tuple[str, int], list[int]] = {}
        hand = _Handover(self)
        try:
            groups = await hand.retrying(lambda: self._group(producer, records, by_topic))
            for tp, indices in groups.items():
                for batch, first, end in _batches(producer, records, indices):
                    spans.append((await hand.send(producer, batch, tp), tp, first, end))
        except Exception as exc:
            await asyncio.gather(*(span[0] for span in spans), return_exceptions=True)
            raise self._failure(records, groups, spans, [exc], handed_all=False) from exc
        return asyncio.ensure_future(self._confirmed(records, groups, spans))

    async def enqueue_on(self, producer: AIOKafkaProducer, records: Sequence[OutRecord]) -> Awaitable[None]:
        """``records`` on another producer (exactly-once delivery's transactional ones), in order per partition,
        without this sink's recovery: a failure fails the transaction, which is aborted and rewound instead."""
        if not records:
            return completed()
        groups = await self._group(producer, records, self._by_topic(records))
        futures: list[asyncio.Future[Any]] = []
        for tp, indices in groups.items():
            for batch, _, _ in _batches(producer, records, indices):
                futures.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
        return asyncio.ensure_future(self._all_acknowledged(records, futures))

    async def _all_acknowledged(self, records: Sequence[OutRecord], futures: list[asyncio.Future[Any]]) -> None:
        errors = [r for r in await asyncio.gather(*futures, return_exceptions=True) if isinstance(r, BaseException)]
        if errors:
            raise KafkaPublishError(f"{len(errors)} of {len(futures)} batches not acknowledged: {errors[0]!r}", errors,
                                    unconfirmed=records)

    def _by_topic(self, records: Sequence[OutRecord]) -> dict[str, list[int]]:
        """Record indices per topic; a record the broker would refuse (over ``max_request_bytes``) raises at once."""
        by_topic: dict[str, list[int]] = {}
        limit = self.config.max_request_bytes
        for i, (_, topic, key, value, headers) in enumerate(records):
            if len(value) > limit:  # the broker would refuse it (message.max.bytes): retrying cannot help
                size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
                msg = f"record of {size} bytes exceeds max_request_bytes ({limit}) for topic {topic}"
                raise KafkaPublishError(msg, [], permanent=True)
            group = by_topic.get(topic)
            if group is None:
                group = by_topic[topic] = []
            group.append(i)
        return by_topic

    async def _confirmed(self, records: Sequence[OutRecord], groups: dict[tuple[str, int], list[int]],
                         spans: list[_Span]) -> None:
        results = await asyncio.gather(*(span[0] for span in spans), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise self._failure(records, groups, spans, errors)

    def _failure(self, records: Sequence[OutRecord], groups: dict[tuple[str, int], list[int]], spans: list[_Span],
                 errors: list[BaseException], *, handed_all: bool = True) -> KafkaPublishError:
        """The error of a group whose batches did not all get acknowledged. Its ``unconfirmed`` records: per
        partition, everything from the first failed (or never handed over) batch on, in the order given."""
        if not groups:  # nothing was handed over
            unconfirmed = list(records)
        else:
            first = {tp: len(indices) for tp, indices in groups.items()}
            if not handed_all:
                first = dict.fromkeys(groups, 0)
                for _, tp, _, end in spans:
                    first[tp] = end
            for fut, tp, start, _ in spans:
                if (fut.cancelled() or fut.exception() is not None) and start < first[tp]:
                    first[tp] = start
            unconfirmed = [records[i] for i in sorted(i for tp, ix in groups.items() for i in ix[first[tp]:])]
        error = errors[0].cause if isinstance(errors[0], _Unsent) else errors[0]
        msg = f"{len(unconfirmed)} of {len(records)} records not acknowledged: {error!r}"
        log.error("kafka.publish_failed", sink=self.name, records=len(records), unconfirmed=len(unconfirmed),
                  failed_batches=len(errors), error=repr(error))
        return KafkaPublishError(msg, errors, unconfirmed=unconfirmed)  # (_Unsent: transient, never tried)

    @staticmethod
    async def _group(
        producer: AIOKafkaProducer, records: Sequence[OutRecord], by_topic: Mapping[str, list[int]]
    ) -> dict[tuple[str, int], list[int]]:
        """Record indices grouped by (topic, partition) in arrival order, partition chosen from the key."""
        groups: dict[tuple[str, int], list[int]] = {}
        for topic, indices in by_topic.items():
            partitions = sorted(await producer.partitions_for(topic))
            if not partitions:
                raise KafkaPublishError(f"topic {topic} has no partitions", [])
            available = sorted(producer.client.cluster.available_partitions_for_topic(topic)) or partitions
            sticky = random.choice(available)  # records without key: one partition per call and topic
            for i in indices:
                key = records[i].key
                partition = _partitioner(key, partitions, available) if key is not None else sticky
                groups.setdefault((topic, partition), []).append(i)
        return groups


def _batches(producer: AIOKafkaProducer, records: Sequence[OutRecord],
             indices: Sequence[int]) -> Iterator[tuple[Any, int, int]]:
    """The records of one partition (``indices``, in order) in producer batches: (batch, first, end) with the
    slice of ``indices`` each holds; a record that does not fit an empty batch raises (``permanent``)."""
    batch, first = producer.create_batch(), 0
    for n, i in enumerate(indices):
        _, _, key, value, headers = records[i]
        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
            yield batch, first, n
            batch, first = producer.create_batch(), n
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                msg = f"record of {len(value)} bytes does not fit a batch (max_batch_bytes)"
                raise KafkaPublishError(msg, [], permanent=True)
    if batch.record_count():
        yield batch, first, len(indices)


CONNECTOR = register(SinkConnector(
    tag="kafka",
    config=KafkaSinkConfig,
    build=KafkaSink,
    summary="Kafka producer for routed events and dead letters (the sink of `bridge run` when `type` is not given).",
))
