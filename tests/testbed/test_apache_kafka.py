"""The Apache Kafka test broker launcher (testbed.apache_kafka): it starts, serves, restarts with its data, and
fails fast and clearly when it cannot start."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from testbed.apache_kafka import ApacheKafka, cluster_id, kafka_libs
from testbed.servers import ServerError

pytestmark = pytest.mark.broker  # starts (or tries to start) Apache Kafka


async def _values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < count:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    out.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return out


async def test_broker_starts_reports_its_version_and_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    """A KRaft node starts, names its version and start time, creates topics with a partition count and configs,
    and after a SIGKILL and restart on the same port still holds every acknowledged record."""
    broker = ApacheKafka(log_dir=tmp_path, heap_mb=384)
    await broker.astart()
    try:
        assert broker.version is not None and broker.version.startswith("4.")
        assert broker.started_in is not None and broker.started_in > 0
        assert "Apache Kafka 4." in broker.describe()
        props = (tmp_path / "server.properties").read_text()
        for line in ("process.roles=broker,controller", "offsets.topic.replication.factor=1",
                     "transaction.state.log.replication.factor=1", "group.initial.rebalance.delay.ms=0"):
            assert line in props
        topic = await broker.acreate_topic("kept", 2, config={"cleanup.policy": "compact"})
        assert broker.create_topic("kept", 2) == "kept"  # exists already: fine
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)  # idempotent: Kafka's default
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, b"v%d" % i, key=b"k%d" % i)
        finally:
            await producer.stop()
        port = broker.port
        await asyncio.to_thread(broker.kill)
        await broker.astart()
        assert broker.port == port
        assert sorted(await _values(broker.bootstrap, topic, 10)) == sorted(b"v%d" % i for i in range(10))
    finally:
        await broker.astop()


def test_missing_jars_name_the_install_step(tmp_path: Path) -> None:
    """Without the broker's jars the launcher fails at once, naming `make install`."""
    broker = ApacheKafka(log_dir=tmp_path, libs=tmp_path / "no-libs")
    with pytest.raises(ServerError, match="make install"):
        broker.start()


def test_missing_jdk_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a java binary (no JAVA_HOME, none on PATH) the error says which JDK package to install."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match="openjdk-17"):
        ApacheKafka(log_dir=tmp_path).start()


def test_a_configuration_the_broker_refuses_fails_with_its_message(tmp_path: Path) -> None:
    """A configuration Kafka refuses fails at the format step with Kafka's own message, never a hang."""
    broker = ApacheKafka(log_dir=tmp_path, properties={"node.id": "not-a-number"})
    with pytest.raises(ServerError, match=r"(?s)StorageTool format failed.*not-a-number"):
        broker.start()


def test_a_broker_that_exits_while_starting_fails_with_its_log_tail(tmp_path: Path) -> None:
    """A broker that exits while starting (its port is taken) fails within the startup timeout with the tail of
    its own log, which says why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = ApacheKafka(log_dir=tmp_path, port=taken.getsockname()[1], startup_timeout=60)
        with pytest.raises(ServerError, match=r"(?s)kafka (exited|did not).*log:.*Address already in use"):
            broker.start()
    assert not broker.running


def test_cluster_ids_look_like_kafkas_own() -> None:
    """Cluster ids are 22 URL-safe base64 characters and never start with a dash (StorageTool's rule)."""
    ids = {cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert kafka_libs().name == "libs" or os.environ.get("BRIDGE_KAFKA_LIBS")
