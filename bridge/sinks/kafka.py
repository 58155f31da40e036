"""Kafka sink: publishes deliveries with aiokafka's batch API, CloudEvents Kafka protocol binding.

``publish`` encodes every delivery to (topic, key, value, headers), picks the partition like the default
partitioner (murmur2 of the key; records without key go, per call, to one randomly chosen partition),
groups records by (topic, partition) preserving their order, fills ``producer.create_batch()`` builders,
hands them to ``send_batch`` and awaits all the delivery futures together: no per-record await. It returns
only when the broker acknowledged every record and raises ``KafkaPublishError`` otherwise.

Encoding (CloudEvents Kafka protocol binding 1.0):
- binary (default): value = JSON of ``data``; headers ``ce_<attribute>`` for every context attribute and
  extension, ``content-type`` = ``datacontenttype``; key = ``partitionkey`` (the subject).
- structured: value = the CloudEvents JSON format; header ``content-type: application/cloudevents+json``.
- dead letters: value = the raw input bytes, no key, headers ``dlq_reason``, ``dlq_source``,
  ``dlq_position`` (plus the event's ``ce_*`` headers when the dead letter carries an event).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from pydantic import Field

from bridge import jsonutil
from bridge.envelope import CloudEvent
from bridge.kafka_common import KafkaClientSettings
from bridge.model import DeadLetter, Delivery, Routed

log = structlog.get_logger(__name__)

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
CE_PREFIX = "ce_"
Header = tuple[str, bytes]
_Record = tuple[bytes | None, bytes, list[Header]]
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


class KafkaPublishError(RuntimeError):
    """Some records of a ``publish`` call were not acknowledged by the broker."""

    def __init__(self, message: str, errors: Sequence[BaseException], *, permanent: bool = False) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self._permanent = permanent

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help (record too large, broker says not retriable): the pipeline then
        isolates the offending records and dead-letters them instead of retrying forever."""
        if self._permanent:
            return True
        return bool(self.errors) and all(not getattr(e, "retriable", True) for e in self.errors)


class KafkaSinkConfig(KafkaClientSettings):
    """Configuration of the Kafka sink (connection/security fields come from ``KafkaClientSettings``)."""

    type: Literal["kafka"] = "kafka"
    name: str = "kafka"
    mode: Literal["binary", "structured"] = "binary"
    linger_ms: int = Field(0, ge=0, description="0: the pipeline already hands over whole batches")
    max_batch_bytes: int = Field(512 * 1024, ge=1024)
    max_request_bytes: int = Field(1024 * 1024, ge=1024)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    acks: Literal["all", 1, 0] = "all"
    enable_idempotence: bool = False
    """Off by default: the tansu test broker has no idempotent producer; turn on for real Kafka if wanted."""


def _attr_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | float):
        return str(value).encode()
    return jsonutil.dumps(value)


_CT_JSON: Header = ("content-type", b"application/json")
_SPEC: Header = ("ce_specversion", b"1.0")


def ce_headers(event: CloudEvent, *, content_type: bool = True) -> list[Header]:
    """Binary-mode headers: ``ce_<name>`` per attribute and extension, ``content-type`` = datacontenttype."""
    headers: list[Header] = [
        _SPEC,
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", event.time.encode()),
        ("ce_platform", event.platform.encode()),
        ("ce_origtype", event.origtype.encode()),
    ]
    if event.status is not None:
        headers.append(("ce_status", event.status.encode()))
    headers.append(("ce_sequence", event.sequence.encode()))
    headers.append(("ce_partitionkey", event.subject.encode()))
    if event.late:
        headers.append(("ce_late", b"true"))
    for key, value in event.extensions.items():
        if value is not None and key not in _RESERVED:
            headers.append((CE_PREFIX + key, _attr_bytes(value)))
    if content_type:
        ct = event.datacontenttype
        headers.append(_CT_JSON if ct == "application/json" else ("content-type", ct.encode()))
    return headers


_RESERVED = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "platform", "origtype",
     "status", "sequence", "partitionkey", "late", "data"}
)


def encode_event(
    event: CloudEvent, mode: Literal["binary", "structured"]
) -> tuple[bytes, bytes, list[Header]]:
    """(key, value, headers) of a canonical event in the given CloudEvents Kafka mode."""
    key = event.partitionkey.encode()
    if mode == "structured":
        return key, event.to_json(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
    value = jsonutil.dumps(event.data) if event.data is not None else b""
    return key, value, ce_headers(event)


def encode_dead_letter(dead: DeadLetter) -> tuple[None, bytes, list[Header]]:
    headers: list[Header] = [
        ("dlq_reason", dead.reason.encode()),
        ("dlq_source", dead.source.encode()),
        ("dlq_position", dead.position.encode()),
    ]
    if dead.event is not None:
        headers.extend(ce_headers(dead.event, content_type=False))
    return None, dead.raw, headers


def decode_record(
    value: bytes | None, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]]
) -> dict[str, Any]:
    """Turn a Kafka record written in binary or structured mode back into a CloudEvents JSON dict."""
    hdrs = dict(headers.items() if isinstance(headers, Mapping) else headers)
    content_type = (hdrs.get("content-type") or b"").decode()
    if content_type.startswith("application/cloudevents"):
        decoded = jsonutil.loads(value or b"null")
        if not isinstance(decoded, dict):
            raise ValueError("structured record value is not a JSON object")
        return decoded
    if CE_PREFIX + "specversion" not in hdrs:
        raise ValueError("record is neither structured nor binary CloudEvents (no ce_specversion header)")
    event: dict[str, Any] = {}
    for key, raw in hdrs.items():
        if key.startswith(CE_PREFIX):
            event[key[len(CE_PREFIX) :]] = (raw or b"").decode()
    if "late" in event:
        event["late"] = event["late"] == "true"
    if content_type:
        event["datacontenttype"] = content_type
    if value:
        event["data"] = jsonutil.loads(value) if "json" in content_type or not content_type else value.decode()
    return event


class KafkaSink:
    """Publishes ``Routed`` events and ``DeadLetter``s to Kafka; see the module docstring."""

    def __init__(self, config: KafkaSinkConfig, **client_overrides: Any) -> None:
        self.config = config
        self.name = config.name
        self._client_overrides = client_overrides
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

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

    def encode(self, delivery: Delivery) -> tuple[str, bytes | None, bytes, list[Header]]:
        """(topic, key, value, headers) of one delivery."""
        if isinstance(delivery, Routed):
            key, value, headers = encode_event(delivery.event, self.config.mode)
            return delivery.topic, key, value, headers
        none_key, value, headers = encode_dead_letter(delivery)
        return delivery.topic, none_key, value, headers

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        producer = self.producer
        by_topic: dict[str, list[_Record]] = {}
        limit = self.config.max_request_bytes
        for delivery in deliveries:
            topic, key, value, headers = self.encode(delivery)
            if len(value) > limit:  # the broker would refuse it (message.max.bytes): retrying cannot help
                size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
                msg = f"record of {size} bytes exceeds max_request_bytes ({limit}) for topic {topic}"
                raise KafkaPublishError(msg, [], permanent=True)
            by_topic.setdefault(topic, []).append((key, value, headers))

        futures: list[asyncio.Future[Any]] = []
        try:
            groups = await self._group(producer, by_topic)
            for (topic, partition), records in groups.items():
                batch = producer.create_batch()
                for key, value, headers in records:
                    if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                            msg = f"record of {len(value)} bytes does not fit a batch (max_batch_bytes)"
                            raise KafkaPublishError(msg, [], permanent=True)
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
        except Exception as exc:
            await asyncio.gather(*futures, return_exceptions=True)
            log.error("kafka.publish_failed", sink=self.name, error=repr(exc))
            if isinstance(exc, KafkaPublishError):
                raise
            raise KafkaPublishError(f"publish failed: {exc!r}", [exc]) from exc

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
