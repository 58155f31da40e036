"""The harness of every source on its real test broker: Kafka (Apache Kafka), Event Hubs (the AMQP test server with
blob checkpoints in azurite), SQS (moto_server).

A fixture named ``<source>_conformance`` in this module, returning a ``SourceHarness``, is all a new source needs:
every test of the suite asking for ``harness`` runs once per such fixture (``pytest_generate_tests`` finds them by
name).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aiokafka import AIOKafkaProducer
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from bridge.limits import MemoryBudget
from bridge.model import Source, SourceBatch
from bridge.sources.eventhubs import EventHubsSource, EventHubsSourceConfig
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from bridge.sources.sqs import SqsSource, SqsSourceConfig
from testbed.eventhubs_server import EventHubsServer
from testbed.waiting import wait_for
from tests.fixtures.kafka_aws import unique
from tests.sources.conformance.harness import TakeOver

SUFFIX = "_conformance"
BINARY = bytes(range(256))  # not UTF-8, not JSON


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test asking for ``harness`` runs once per ``<source>_conformance`` fixture."""
    if "harness_fixture" in metafunc.fixturenames:
        names = sorted(n for n in globals() if n.endswith(SUFFIX))
        metafunc.parametrize("harness_fixture", names, ids=[n.removesuffix(SUFFIX) for n in names])


@pytest.fixture
def harness(harness_fixture: str, request: pytest.FixtureRequest) -> Any:
    """The harness of the source this run of the test is for."""
    return request.getfixturevalue(harness_fixture)


def _partition(batch_message_position: str) -> int:
    """The partition of a ``stream/partition@offset`` position."""
    return int(batch_message_position.rsplit("@", 1)[0].rsplit("/", 1)[1])


def _lost(held: Sequence[SourceBatch], partitions: set[int]) -> set[bytes]:
    return {m.body for b in held for m in b.messages if _partition(m.position) in partitions}


async def _one_partition_each(first: Source, second: Source, held: Sequence[SourceBatch],
                              owned: Callable[[Source], set[int]]) -> TakeOver:
    """Start ``second`` and wait until each of the two consumers owns one of the two partitions."""
    await second.start()
    await wait_for(lambda: len(owned(first)) == 1 and len(owned(second)) == 1,
                   within=45, every=0.1, what="one partition each")
    return TakeOver(second, _lost(held, owned(second)))


STREAM_POISON = [b"", BINARY, b"{not json", b'[{"id": 1}', b"\xc3\x28", b"x" * 300_000]


class KafkaHarness:
    """A two-partition topic and a consumer group on the session's Apache Kafka."""

    name = "kafka"
    ordered = True
    quiet = 3.0

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = unique("conformance")

    async def produce(self, bodies: Sequence[bytes], partition: int = 0) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            futures = [await producer.send(self.topic, body, partition=partition) for body in bodies]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    def source(self, *, batch_size: int = 10, budget: MemoryBudget | None = None) -> KafkaSource:
        cfg = KafkaSourceConfig.model_validate({
            "type": "kafka", "bootstrap_servers": self.bootstrap, "topics": [self.topic], "group_id": self.group,
            "max_batch_size": batch_size, "fetch_max_wait_ms": 100, "poll_timeout_ms": 200,
            "session_timeout_ms": 6000, "heartbeat_interval_ms": 500,  # the broker's shortest session
        })
        return KafkaSource(cfg, budget=budget)

    def poison(self) -> list[bytes]:
        return STREAM_POISON

    def holder(self) -> KafkaSource:
        return self.source(batch_size=3)

    async def take_over(self, first: Source, held: Sequence[SourceBatch]) -> TakeOver:
        """A second member joins the group: the rebalance moves a partition to it (the first keeps polling)."""

        def owned(source: Source) -> set[int]:
            assert isinstance(source, KafkaSource)
            return {tp.partition for tp in source.consumer.assignment()}

        return await _one_partition_each(first, self.source(batch_size=3), held, owned)


class EventHubsHarness:
    """A two-partition hub on the Event Hubs test server, checkpoints and ownership in an azurite container."""

    name = "eventhubs"
    ordered = True
    quiet = 3.0

    def __init__(self, server: EventHubsServer, hub: str, storage: str, container: str) -> None:
        self.conn = server.connection_string(hub)
        self.storage = storage
        self.container = container

    async def produce(self, bodies: Sequence[bytes], partition: int = 0) -> None:
        async with EventHubProducerClient.from_connection_string(self.conn) as producer:
            batch = await producer.create_batch(partition_id=str(partition))
            for body in bodies:
                batch.add(EventData(body))
            await producer.send_batch(batch)

    def source(self, *, batch_size: int = 10, budget: MemoryBudget | None = None) -> EventHubsSource:
        cfg = EventHubsSourceConfig.model_validate({
            "type": "eventhubs", "connection_string": self.conn, "max_batch_size": batch_size, "max_wait_time": 0.2,
            "load_balancing_interval": 1.0, "partition_ownership_expiration_interval": 4.0,
            "checkpoint_store": {"connection_string": self.storage, "container": self.container},
        })
        return EventHubsSource(cfg, budget=budget)

    def poison(self) -> list[bytes]:
        return STREAM_POISON

    def holder(self) -> EventHubsSource:
        return self.source(batch_size=3)

    async def take_over(self, first: Source, held: Sequence[SourceBatch]) -> TakeOver:
        """A second replica on the same checkpoint store: load balancing gives it one of the two partitions."""

        def owned(source: Source) -> set[int]:
            assert isinstance(source, EventHubsSource)
            return {int(p) for p in source.owned_partitions}

        return await _one_partition_each(first, self.source(batch_size=3), held, owned)


class SqsHarness:
    """A queue on moto_server; competing consumers and visibility timeouts instead of partitions.

    A consumer stopped in the middle of a long poll leaves what that poll still receives invisible until the
    visibility timeout (the request completes server-side): its consumers here use 2 s, so a restart gets those
    messages within seconds (in production they come back after ``visibility_timeout``, at least once)."""

    name = "sqs"
    ordered = False
    quiet = 4.0  # twice the visibility timeout of its consumers

    def __init__(self, queue_url: str, aws: dict[str, str]) -> None:
        self.url = queue_url
        self.aws = aws
        self._holder_budget: MemoryBudget | None = None

    async def produce(self, bodies: Sequence[bytes], partition: int = 0) -> None:
        sqs: Any = boto3.client("sqs", **self.aws)
        for i in range(0, len(bodies), 10):
            entries = [{"Id": str(j), "MessageBody": b.decode()} for j, b in enumerate(bodies[i : i + 10])]
            await asyncio.to_thread(sqs.send_message_batch, QueueUrl=self.url, Entries=entries)

    def source(self, *, batch_size: int = 10, budget: MemoryBudget | None = None, **extra: Any) -> SqsSource:
        cfg = SqsSourceConfig.model_validate({
            "type": "sqs", "queue_url": self.url, "region": self.aws["region_name"],
            "endpoint_url": self.aws["endpoint_url"], "aws_access_key_id": self.aws["aws_access_key_id"],
            "aws_secret_access_key": self.aws["aws_secret_access_key"], "wait_time_seconds": 1,
            "max_messages": min(batch_size, 10), "receivers": 1, "visibility_timeout": 2, **extra,
        })
        return SqsSource(cfg, budget=budget)

    def poison(self) -> list[bytes]:
        return [b" ", b"{not json", b'[{"id": 1}', "\u00e9t\u00e9 \u2603".encode(), b"null", b"x" * 200_000]

    def holder(self) -> SqsSource:
        """Messages held without a heartbeat under a 3 s visibility timeout: they return to the queue."""
        self._holder_budget = MemoryBudget(1 << 40)
        return self.source(batch_size=3, budget=self._holder_budget, visibility_timeout=3, extend_visibility=False)

    async def take_over(self, first: Source, held: Sequence[SourceBatch]) -> TakeOver:
        """The holder stops receiving (its budget is full) and a second consumer gets what the holder held once
        the visibility timeout ran out."""
        assert self._holder_budget is not None
        self._holder_budget.charge("source", self._holder_budget.limit)
        second = self.source()
        await second.start()
        return TakeOver(second, {m.body for b in held for m in b.messages})


@pytest.fixture
def kafka_conformance(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> KafkaHarness:
    return KafkaHarness(kafka_bootstrap, kafka_topic("conformance", partitions=2))


@pytest.fixture
def eventhubs_conformance(eventhubs_server: EventHubsServer, eventhub: Callable[..., str],
                          azurite_connection_string: str, checkpoint_container: Callable[[], str]) -> EventHubsHarness:
    return EventHubsHarness(eventhubs_server, eventhub(2), azurite_connection_string, checkpoint_container())


@pytest.fixture
def sqs_conformance(sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]) -> SqsHarness:
    return SqsHarness(sqs_queue("conformance"), aws_client_kwargs)
