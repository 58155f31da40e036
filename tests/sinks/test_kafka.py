"""Kafka sink against Apache Kafka (the session broker, or a private one to stop): CloudEvents binding, keys,
partitions, DLQ, and the idempotent producer across a broker restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError
from aiokafka.partitioner import murmur2

from bridge.envelope import CloudEvent
from bridge.model import DeadLetter, OutRecord
from bridge.sinks.encoding import encode_routed
from bridge.sinks.kafka import KafkaPublishError, KafkaSink, KafkaSinkConfig, decode_record
from testbed.apache_kafka import ApacheKafka
from testbed.servers import RefusedPort


def event(n: int, subject: str = "training-job/kmeans-1", **changes: Any) -> CloudEvent:
    base = CloudEvent(
        id=f"evt-{n}",
        source="aws.sagemaker/us-east-1/123456789012",
        type="ml.job.status_changed",
        subject=subject,
        time=f"2026-11-23T10:00:{n % 60:02d}Z",
        data={"TrainingJobName": subject.split("/")[-1], "TrainingJobStatus": "InProgress", "n": n},
        platform="sagemaker",
        origtype="SageMaker Training Job State Change",
        sequence=f"2026-11-23T10:00:{n % 60:02d}.000000Z#{n:06d}",
        status="running",
    )
    return base.evolve(**changes) if changes else base


async def consume(
    bootstrap: str, topic: str, count: int, within: float = 20.0
) -> list[ConsumerRecord[Any, Any]]:
    """Read ``count`` records of ``topic`` from the beginning (no group)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[ConsumerRecord[Any, Any]] = []
    try:
        async with asyncio.timeout(within):
            while len(out) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(records)
    finally:
        await consumer.stop()
    return out


def sink_for(bootstrap: str, **extra: Any) -> KafkaSink:
    return KafkaSink(
        KafkaSinkConfig.model_validate({"type": "kafka", "bootstrap_servers": bootstrap, **extra})
    )


async def test_binary_mode_round_trip(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    """Binary mode writes data as the JSON value, every attribute as a ce_* header and the subject as key."""
    topic = kafka_topic("bin", partitions=3)
    events = [
        event(1),
        event(2, late=True, status="completed"),
        event(3, extensions={"traceparent": "00-ab"}),
    ]
    sink = sink_for(kafka_bootstrap)
    await sink.start()
    try:
        await sink.publish([encode_routed(sink.encoder, "all", topic, e) for e in events])
    finally:
        await sink.stop()
    records = sorted(await consume(kafka_bootstrap, topic, 3), key=lambda r: r.offset)
    assert len(records) == 3
    for record, ev in zip(records, events, strict=True):
        headers = dict(record.headers)
        assert record.key == b"training-job/kmeans-1"
        assert orjson.loads(record.value) == ev.data
        assert headers["content-type"] == b"application/json"
        assert headers["ce_specversion"] == b"1.0"
        assert headers["ce_id"] == ev.id.encode()
        assert headers["ce_source"] == ev.source.encode()
        assert headers["ce_type"] == b"ml.job.status_changed"
        assert headers["ce_subject"] == ev.subject.encode()
        assert headers["ce_time"] == ev.time.encode()
        assert headers["ce_platform"] == b"sagemaker"
        assert headers["ce_origtype"] == b"SageMaker Training Job State Change"
        assert headers["ce_status"] == ev.status.encode()  # type: ignore[union-attr]
        assert headers["ce_sequence"] == ev.sequence.encode()
        assert headers["ce_partitionkey"] == ev.subject.encode()
        assert decode_record(record.value, record.headers) == ev.to_dict()
    assert dict(records[1].headers)["ce_late"] == b"true"
    assert "ce_late" not in dict(records[0].headers)
    assert dict(records[2].headers)["ce_traceparent"] == b"00-ab"
    assert len({r.partition for r in records}) == 1  # one key, one partition, in publish order


async def test_structured_mode_round_trip(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    """Structured mode writes the CloudEvents JSON as value, content-type application/cloudevents+json."""
    topic = kafka_topic("struct", partitions=2)
    ev = event(7, subject="models/churn:3", status=None, type="ml.model.registered")
    sink = sink_for(kafka_bootstrap, mode="structured")
    await sink.start()
    try:
        await sink.publish([encode_routed(sink.encoder, "models", topic, ev)])
    finally:
        await sink.stop()
    (record,) = await consume(kafka_bootstrap, topic, 1)
    assert record.key == b"models/churn:3"
    assert list(record.headers) == [("content-type", b"application/cloudevents+json")]
    assert orjson.loads(record.value) == ev.to_dict()
    assert "status" not in orjson.loads(record.value)
    assert decode_record(record.value, record.headers) == ev.to_dict()


async def test_partition_follows_the_default_partitioner_and_keeps_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """Each record lands on murmur2(key) % partitions, like Java's default partitioner, in publish order."""
    topic = kafka_topic("part", partitions=4)
    subjects = [f"training-job/job-{i}" for i in range(12)]
    sink = sink_for(kafka_bootstrap, max_batch_bytes=2048)  # small batches: several per partition
    records = [encode_routed(sink.encoder, "all", topic, event(n, subject=subjects[n % len(subjects)]))
               for n in range(60)]
    await sink.start()
    try:
        await sink.publish(records)
    finally:
        await sink.stop()
    records = await consume(kafka_bootstrap, topic, 60)
    assert len(records) == 60
    used = set()
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % 4
        used.add(record.partition)
    assert len(used) > 1
    for subject in subjects:  # per key: publish order preserved
        ns = [
            orjson.loads(r.value)["n"]
            for r in sorted(records, key=lambda r: r.offset)
            if r.key == subject.encode()
        ]
        assert ns == sorted(ns) and len(ns) == 5


async def test_dead_letters_carry_raw_bytes_and_reason_headers(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """A dead letter is the raw input as value, no key, dlq_* headers, and ce_* headers if it had an event."""
    dlq = kafka_topic("dlq", partitions=2)
    out = kafka_topic("out", partitions=2)
    late = event(9, late=True)
    sink = sink_for(kafka_bootstrap)
    records: list[OutRecord] = [
        sink.encoder.dead_letter(
            DeadLetter(topic=dlq, reason="malformed JSON", raw=b"{not json", source="kafka", position="raw/0@17")
        ),
        sink.encoder.dead_letter(
            DeadLetter(topic=dlq, reason="late", raw=b'{"id":"evt-9"}', source="sqs", position="q#m-1", event=late)
        ),
        encode_routed(sink.encoder, "all", out, event(10)),
    ]
    await sink.start()
    try:
        await sink.publish(records)
    finally:
        await sink.stop()
    by_reason = {dict(r.headers)["dlq_reason"]: r for r in await consume(kafka_bootstrap, dlq, 2)}
    first, second = by_reason[b"malformed JSON"], by_reason[b"late"]
    assert first.key is None and second.key is None
    assert first.value == b"{not json"
    assert dict(first.headers) == {
        "dlq_reason": b"malformed JSON",
        "dlq_source": b"kafka",
        "dlq_position": b"raw/0@17",
    }
    headers = dict(second.headers)
    assert second.value == b'{"id":"evt-9"}'
    assert headers["dlq_reason"] == b"late" and headers["dlq_position"] == b"q#m-1"
    assert headers["ce_id"] == b"evt-9" and headers["ce_late"] == b"true"
    assert "content-type" not in headers
    assert len(await consume(kafka_bootstrap, out, 1)) == 1


def test_the_producer_follows_kafkas_own_defaults() -> None:
    """Without settings the sink asks every in-sync replica (acks all) and uses the idempotent producer, like the
    Java client since Kafka 3.0; idempotence with fewer acks is a config error."""
    cfg = KafkaSinkConfig()
    assert cfg.acks == "all" and cfg.enable_idempotence is True
    with pytest.raises(ValueError, match="enable_idempotence needs acks all"):
        KafkaSinkConfig(acks=1)
    assert KafkaSinkConfig(acks=1, enable_idempotence=False).acks == 1


@pytest.mark.broker
async def test_publish_raises_when_the_broker_is_gone_without_idempotence(tmp_path: Any) -> None:
    """With the idempotent producer turned off, publish raises KafkaPublishError instead of returning when records
    cannot be acknowledged (the producer gives up after its request timeout)."""
    broker = ApacheKafka(log_dir=tmp_path)
    await broker.astart()
    topic = broker.create_topic("gone", 1)
    sink = sink_for(broker.bootstrap, request_timeout_ms=3000, enable_idempotence=False)
    await sink.start()
    try:
        await sink.publish([encode_routed(sink.encoder, "all", topic, event(1))])
        await broker.astop()
        with pytest.raises(KafkaPublishError):
            await asyncio.wait_for(sink.publish([encode_routed(sink.encoder, "all", topic, event(2))]), 60)
    finally:
        await sink.stop()
        await broker.astop()


@pytest.mark.broker
async def test_idempotent_publish_across_a_broker_killed_and_restarted_writes_each_record_once_in_order(
    tmp_path: Any,
) -> None:
    """With the default idempotent producer, publishes in flight while the broker is SIGKILLed and restarted
    wait for it instead of failing, and every partition holds each record exactly once, in the order sent."""
    broker = ApacheKafka(log_dir=tmp_path)
    await broker.astart()
    topic = broker.create_topic("restart", 3)
    sink = sink_for(broker.bootstrap, request_timeout_ms=5000, max_batch_bytes=16 * 1024)
    await sink.start()
    subjects = [f"training-job/j{s}" for s in range(12)]
    n = 3000
    try:
        records = [encode_routed(sink.encoder, "all", topic, event(i, subjects[i % len(subjects)])) for i in range(n)]
        await sink.publish(records[:500])

        async def groups_in_order() -> None:  # as the delivery worker does: hand over in order, then await
            confirmations = [await sink.enqueue(records[i : i + 100]) for i in range(500, n, 100)]
            await asyncio.gather(*confirmations)

        handing_over = asyncio.ensure_future(groups_in_order())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(broker.kill)
        assert not handing_over.done(), "every group was confirmed before the kill: the test proves nothing"
        await asyncio.sleep(2)
        await broker.astart()
        await asyncio.wait_for(handing_over, 120)
        got = await consume(broker.bootstrap, topic, n, within=60)
    finally:
        await sink.stop()
        await broker.astop()
    ids = [orjson.loads(r.value)["n"] for r in got]
    assert len(ids) == n and sorted(ids) == list(range(n)), f"{len(ids)} records, {len(set(ids))} distinct"
    for p in {r.partition for r in got}:
        in_partition = [orjson.loads(r.value)["n"] for r in sorted(got, key=lambda r: r.offset) if r.partition == p]
        assert in_partition == sorted(in_partition), f"partition {p} out of order"


def test_decode_record_rejects_non_cloudevents() -> None:
    """decode_record refuses a record that is neither binary nor structured CloudEvents."""
    with pytest.raises(ValueError):
        decode_record(b"{}", [("content-type", b"application/json")])
    assert decode_record(b'{"a":1}', {"ce_specversion": b"1.0", "ce_id": b"x"}) == {
        "specversion": "1.0",
        "id": "x",
        "data": {"a": 1},
    }


async def test_start_fails_when_no_broker_answers() -> None:
    """start() raises (and cleans up) when the bootstrap servers are unreachable, so the caller can retry."""
    with RefusedPort() as dead:
        sink = sink_for(f"127.0.0.1:{dead}", request_timeout_ms=2000)
        with pytest.raises(KafkaConnectionError):
            await sink.start()
    assert not sink.ready


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_big_integers_reach_kafka_exactly(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], mode: str
) -> None:
    """A data integer beyond 64 bits is in the Kafka record exactly (decoded with the standard library)."""
    import json

    topic = kafka_topic("bigint", partitions=1)
    n = 2**64 + 12345
    ev = event(1, data={"Huge": n, "Neg": -n, "Deep": [[[n]]]}, extensions={"bigext": n})
    sink = sink_for(kafka_bootstrap, mode=mode)
    await sink.start()
    try:
        await sink.publish([encode_routed(sink.encoder, "all", topic, ev)])
    finally:
        await sink.stop()
    (record,) = await consume(kafka_bootstrap, topic, 1)
    decoded = json.loads(record.value)
    data = decoded if mode == "binary" else decoded["data"]
    assert data == {"Huge": n, "Neg": -n, "Deep": [[[n]]]}
    assert decode_record(record.value, record.headers)["data"]["Huge"] == n
    if mode == "binary":
        assert dict(record.headers)["ce_bigext"] == str(n).encode()
