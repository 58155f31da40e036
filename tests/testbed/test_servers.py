"""Process launchers for the test brokers: free ports, readiness, log capture, clean and forced stops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import boto3  # type: ignore[import-untyped]
import pytest
from aiokafka import AIOKafkaProducer

from testbed.servers import ManagedProcess, MotoServer, ServerError, Tansu, free_port, free_ports, port_open


class _Stubborn(ManagedProcess):
    """Listens on its port and ignores SIGTERM, so only SIGKILL ends it."""

    name: ClassVar[str] = "stubborn"

    def command(self) -> list[str]:
        code = (
            "import signal, socket, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"s = socket.socket(); s.bind(({self.host!r}, {self.port})); s.listen()\n"
            "print('listening', flush=True)\n"
            "time.sleep(120)\n"
        )
        return [sys.executable, "-c", code]


class _Crashing(ManagedProcess):
    name: ClassVar[str] = "crashing"

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import sys; print('boom: bad flag', flush=True); sys.exit(3)"]


def test_free_port_is_bindable() -> None:
    """free_port returns a port nothing listens on yet."""
    port = free_port()
    assert 1024 < port < 65536
    assert not port_open("127.0.0.1", port)


def test_stop_escalates_to_sigkill_and_captures_the_log(tmp_path: Path) -> None:
    """A process that ignores SIGTERM is killed after stop_timeout, and its output is in the log file."""
    proc = _Stubborn(log_dir=tmp_path, stop_timeout=1.0)
    proc.start()
    assert proc.running and port_open(proc.host, proc.port)
    popen = proc.process
    assert popen is not None
    started = time.monotonic()
    proc.stop()
    assert 0.9 < time.monotonic() - started < 10
    assert popen.returncode == -signal.SIGKILL
    assert not proc.running and not port_open(proc.host, proc.port)
    assert "listening" in proc.log_path.read_text()
    proc.stop()  # idempotent


def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    """A process that dies while starting raises ServerError quoting its output."""
    proc = _Crashing(log_dir=tmp_path, startup_timeout=5)
    with pytest.raises(ServerError, match="boom: bad flag"):
        proc.start()
    assert not proc.running


@pytest.mark.broker
async def test_tansu_serves_kafka_and_creates_topics(tmp_path: Path) -> None:
    """Tansu starts on a free port, creates topics (idempotently), accepts produce, and stops with SIGTERM."""
    with Tansu(log_dir=tmp_path) as broker:
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        topic = broker.create_topic("launcher-test", partitions=2)
        assert broker.create_topic("launcher-test", partitions=2) == topic
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            assert await producer.partitions_for(topic) == {0, 1}
            meta = await producer.send_and_wait(topic, b"v", partition=1)
            assert meta.offset == 0
        finally:
            await producer.stop()
        popen = broker.process
        assert popen is not None
    assert popen.returncode is not None
    assert not port_open(broker.host, broker.port)
    assert "tansu" in broker.log_path.read_text()


@pytest.mark.broker
def test_moto_server_answers_aws_calls_and_resets(tmp_path: Path) -> None:
    """MotoServer serves SQS at endpoint_url and reset() drops every resource."""
    with MotoServer(log_dir=tmp_path) as moto:
        sqs = boto3.client("sqs", **moto.client_kwargs())
        sqs.create_queue(QueueName="launcher")
        assert len(sqs.list_queues().get("QueueUrls", [])) == 1
        moto.reset()
        assert sqs.list_queues().get("QueueUrls", []) == []
    assert not port_open(moto.host, moto.port)


@pytest.mark.broker
async def test_async_start_and_stop(tmp_path: Path) -> None:
    """astart/astop run the blocking launcher off the event loop."""
    broker = Tansu(log_dir=tmp_path)
    await broker.astart()
    assert port_open(broker.host, broker.port)
    await broker.astop()
    assert not broker.running


@pytest.mark.broker
def test_module_entry_point_runs_until_sigterm(tmp_path: Path) -> None:
    """`python -m testbed.servers kafka moto` (the README's) prints the endpoints, serves, and exits 0 on SIGTERM."""
    cmd = [sys.executable, "-m", "testbed.servers", "kafka", "moto", "--topic", "ml.events.raw"]
    cmd += ["--log-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        kafka_line = proc.stdout.readline()
        moto_line = proc.stdout.readline()
        assert kafka_line.startswith("kafka") and "version=4." in kafka_line and moto_line.startswith("moto")
        bootstrap = kafka_line.split("bootstrap_servers=")[1].split()[0]
        host, port = bootstrap.rsplit(":", 1)
        assert port_open(host, int(port))
        endpoint = moto_line.split("endpoint_url=")[1].split()[0]
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        assert "QueueUrls" not in sqs.list_queues() or sqs.list_queues()["QueueUrls"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not port_open(host, int(port))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_astart_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """While astart waits for the process, other tasks of the event loop keep running."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    proc = _Stubborn(log_dir=tmp_path, stop_timeout=0.5)
    await proc.astart()
    await proc.astop()  # SIGTERM is ignored: 0.5 s until SIGKILL, during which the ticker runs
    task.cancel()
    assert ticks >= 10


def test_refused_port_refuses_connections_and_stays_reserved_while_open() -> None:
    """A RefusedPort refuses connections, and no other socket can bind it until it is closed."""
    import socket

    from testbed.servers import RefusedPort, port_open

    with RefusedPort() as port:
        assert not port_open("127.0.0.1", port)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))  # free again once closed


def test_free_ports_are_distinct_and_avoid_the_ports_taken() -> None:
    """free_ports hands out distinct ports, none of those already taken (a Kafka node's listeners and
    controller each need their own)."""
    first = free_ports(3)
    ports = free_ports(40, taken=first)
    assert len(set(ports)) == 40 and not set(ports) & set(first)
