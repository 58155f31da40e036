"""Kafka source against Apache Kafka, what is its own: records, positions and headers, the commit task, the
commit at revoke, TLS (the contract every source keeps is tests/sources/conformance/)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from bridge.kafka_common import KafkaClientSettings, event_hubs_settings
from bridge.model import SourceBatch
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from bridge.testing.sources import collect_batches
from testbed.kafka_auth import SecuredKafka
from testbed.waiting import wait_for
from tests.fixtures.kafka_aws import unique

Record = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]


async def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> list[str]:
    """Produce (partition, key, value, headers) records; return their positions in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, partition=partition, headers=headers)
            for partition, key, value, headers in records
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [f"{m.topic}/{m.partition}@{m.offset}" for m in metas]


collect = collect_batches


async def group_offsets(bootstrap: str, topic: str, group: str, partitions: int = 1) -> dict[TopicPartition, int]:
    """Committed offsets of ``group`` as the broker reports them (read by an outside, non-member client)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        found: dict[TopicPartition, int] = {}
        for p in range(partitions):
            tp = TopicPartition(topic, p)
            offset = await reader.committed(tp)
            if offset is not None:
                found[tp] = offset
        return found
    finally:
        await reader.stop()


# the shortest session the broker allows (group.min.session.timeout.ms, 6 s by default): a member that dies
# without leaving the group is noticed soon, which keeps these tests fast.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def source_for(bootstrap: str, topic: str, group: str, **extra: object) -> KafkaSource:
    cfg = KafkaSourceConfig.model_validate(
        {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topics": [topic],
            "group_id": group,
            **FAST_GROUP,
            **extra,
        }
    )
    return KafkaSource(cfg)


async def test_yields_records_with_positions_headers_and_tombstones(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """Every record comes out once with its body, its headers (ce_* included) and topic/partition@offset."""
    topic = kafka_topic("src", partitions=3)
    records: list[Record] = [
        (i % 3, f"k{i}".encode(), f'{{"n":{i}}}'.encode(), [("ce_id", f"id-{i}".encode()), ("ce_type", b"t")])
        for i in range(12)
    ]
    records.append((1, b"gone", None, []))  # tombstone
    positions = await produce(kafka_bootstrap, topic, records)
    source = source_for(kafka_bootstrap, topic, unique("g"))
    await source.start()
    try:
        assert source.ready
        batches = await collect(source, len(records))
    finally:
        await source.stop()
    assert not source.ready
    got = {m.position: m for b in batches for m in b.messages}
    assert sorted(got) == sorted(positions)
    for pos, (_, _, value, headers) in zip(positions, records, strict=True):
        msg = got[pos]
        assert msg.body == (value if value is not None else b"")
        assert dict(msg.headers) == dict(headers)
        assert msg.source == "kafka"
    assert all(b.source == "kafka" and b.ack is not None for b in batches)


async def test_commits_are_sent_by_the_background_task(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    """An ack alone (no explicit flush) gets its offset committed promptly by the coalescing commit task."""
    topic = kafka_topic("bg", partitions=2)
    await produce(kafka_bootstrap, topic, [(i % 2, None, b"v", []) for i in range(6)])
    group = unique("g")
    source = source_for(kafka_bootstrap, topic, group)
    await source.start()
    try:
        for batch in await collect(source, 6):
            assert batch.ack is not None
            await batch.ack()
        want = {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 3}

        async def committed() -> bool:
            return await group_offsets(kafka_bootstrap, topic, group, 2) == want

        await wait_for(committed, within=10, every=0.1, what=f"offsets {want} committed")
    finally:
        await source.stop()


async def test_commit_task_survives_a_cancellation_raised_inside_the_client(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """A commit that fails with CancelledError from inside aiokafka (not a stop) is retried: the offsets
    still reach the broker and later acks keep committing (the commit task must not die silently)."""
    topic = kafka_topic("commit-cancel", partitions=1)
    await produce(kafka_bootstrap, topic, [(0, None, b"v", []) for _ in range(4)])
    group = unique("g")
    source = source_for(kafka_bootstrap, topic, group, max_batch_size=2)
    await source.start()
    real_commit = source.consumer.commit
    failures = 0

    async def flaky_commit(offsets: object = None) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise asyncio.CancelledError()  # as a cancelled coordinator request surfaces
        await real_commit(offsets)  # type: ignore[arg-type]

    source.consumer.commit = flaky_commit  # type: ignore[method-assign]
    try:
        batches = await collect(source, 4)
        for batch in batches:
            assert batch.ack is not None
            await batch.ack()
        async def committed() -> bool:
            return await group_offsets(kafka_bootstrap, topic, group) == {TopicPartition(topic, 0): 4}

        await wait_for(committed, within=10, what="offset 4 committed after the failed commit")
        assert failures == 1
        await produce(kafka_bootstrap, topic, [(0, None, b"v", []) for _ in range(2)])
        for batch in await collect(source, 2):  # later acks keep committing: the commit task is alive
            assert batch.ack is not None
            await batch.ack()

        async def committed_later() -> bool:
            return await group_offsets(kafka_bootstrap, topic, group) == {TopicPartition(topic, 0): 6}

        await wait_for(committed_later, within=10, what="offset 6 committed by the same commit task")
    finally:
        await source.stop()


async def test_rebalance_commits_the_done_prefix_at_revoke(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """On revoke the contiguous-done offsets are committed by the revoke callback itself (the commit task is idle);
    what the conformance suite checks of every source (late acks of lost positions release nothing) is not
    repeated here."""
    topic = kafka_topic("rebal", partitions=2)
    await produce(kafka_bootstrap, topic, [(p, None, b"%d-%d" % (p, i), []) for p in (0, 1) for i in range(6)])
    group = unique("g")
    fast = {"max_batch_size": 3}
    # A long coalescing window: nothing is committed by the commit task, only by the revoke callback.
    first = source_for(kafka_bootstrap, topic, group, commit_interval_ms=600_000, **fast)
    await first.start()
    second = source_for(kafka_bootstrap, topic, group, **fast)
    pulled: list[SourceBatch] = []
    pump: asyncio.Task[None] | None = None
    try:
        batches = await collect(first, 12)
        by_part: dict[int, list[SourceBatch]] = {0: [], 1: []}
        for batch in batches:
            for part in {int(m.position.split("/")[1].split("@")[0]) for m in batch.messages}:
                by_part[part].append(batch)
        held = by_part[0][-1]  # the last batch touching partition 0 stays unacked over the rebalance
        for batch in batches:
            if batch is not held:
                assert batch.ack is not None
                await batch.ack()
        assert await group_offsets(kafka_bootstrap, topic, group, 2) == {}
        held_first = min(int(m.position.rsplit("@", 1)[1]) for m in held.messages if "/0@" in m.position)

        async def keep_polling() -> None:
            async for batch in first.batches():
                pulled.append(batch)

        pump = asyncio.create_task(keep_polling())
        await second.start()  # joining triggers the rebalance; the first source's revoke commits
        expected = {TopicPartition(topic, 0): held_first}
        if held not in by_part[1]:
            expected[TopicPartition(topic, 1)] = 6
        async def reached() -> bool:
            offsets = await group_offsets(kafka_bootstrap, topic, group, 2)
            return all(offsets.get(tp) == off for tp, off in expected.items())

        await wait_for(reached, within=30, every=0.2, what=f"offsets {expected} committed")
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        await second.stop()
        await first.stop()


def test_security_settings_cover_event_hubs_and_msk() -> None:
    """Event Hubs (SASL_SSL PLAIN $ConnectionString) and MSK SCRAM map to aiokafka TLS+SASL arguments."""
    eh = KafkaSourceConfig.model_validate(
        {"type": "kafka", **event_hubs_settings("myns", "Endpoint=sb://myns.servicebus.windows.net/;K=v")}
    )
    kwargs = eh.client_kwargs()
    assert kwargs["bootstrap_servers"] == "myns.servicebus.windows.net:9093"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "PLAIN"
    assert kwargs["sasl_plain_username"] == "$ConnectionString"
    assert kwargs["sasl_plain_password"].startswith("Endpoint=sb://")
    assert kwargs["ssl_context"].check_hostname is True
    assert "Endpoint" not in repr(eh)  # the password is a SecretStr
    msk = KafkaClientSettings.model_validate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password": "p",
        }
    )
    assert msk.client_kwargs()["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_context" not in KafkaClientSettings().client_kwargs()
    oauth = KafkaClientSettings.model_validate(
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "sasl_oauth_token": "tok"}
    )
    assert oauth.client_kwargs()["sasl_oauth_token_provider"] is not None
    with pytest.raises(ValidationError):
        KafkaClientSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError):
        KafkaClientSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    with pytest.raises(ValidationError):
        KafkaSourceConfig.model_validate({"type": "kafka", "bootstrap_server": "typo:9092"})


async def test_consumes_over_tls_with_a_private_ca(auth_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
                                                   ) -> None:
    """security_protocol SSL with ssl_cafile verifies the broker certificate and hostname (Apache Kafka's SSL
    listener); records flow; without the private CA the client refuses the broker."""
    ca = auth_kafka.ca.path
    tls_bootstrap = auth_kafka.bootstrap("TLS")
    topic = auth_kafka.broker.create_topic(unique("tls"), 1)
    producer = AIOKafkaProducer(bootstrap_servers=tls_bootstrap, security_protocol="SSL",
                                ssl_context=ssl.create_default_context(cafile=str(ca)))
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls", headers=[("ce_id", b"t1")])
    finally:
        await producer.stop()
    source = source_for(tls_bootstrap, topic, unique("g"), security_protocol="SSL", ssl_cafile=str(ca))
    await source.start()
    try:
        (batch,) = await collect(source, 1)
    finally:
        await source.stop()
    assert batch.messages[0].body == b"over tls"
    assert batch.messages[0].headers == {"ce_id": b"t1"}

    untrusted = source_for(tls_bootstrap, topic, unique("g"), security_protocol="SSL")  # system CAs only
    with pytest.raises(KafkaConnectionError):  # the private CA is not among the system CAs
        await asyncio.wait_for(untrusted.start(), 20)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    with contextlib.suppress(Exception):
        await untrusted.stop()
