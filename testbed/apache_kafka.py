"""The test broker: Apache Kafka 4.x itself, one KRaft node (broker and controller in one JVM), from Maven Central.

``make install`` copies the jars pinned in ``scripts/kafka/pom.xml`` into ``.tools/kafka/libs``
(``scripts/install-kafka.sh``). ``ApacheKafka`` formats a data directory (``kafka.tools.StorageTool format``,
SCRAM users added there), writes ``server.properties`` and a log4j2 config, starts ``kafka.Kafka`` with a bounded
heap and waits until the broker says it started. The internal topics' replication factors are 1 and
``group.initial.rebalance.delay.ms`` is 0; everything else is Kafka's own default unless a test asks otherwise.
A restart (``stop``/``kill`` then ``start``) comes back on the same ports with the same data: Kafka keeps what it
acknowledged. Extra listeners (SASL, TLS) are ``Listener``s; the PLAINTEXT one is ``bootstrap``::

    with ApacheKafka() as kafka:
        kafka.create_topic("ml.events.raw", partitions=3)
        print(kafka.bootstrap, kafka.version, kafka.started_in)
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from testbed.servers import DEFAULT_HOST, ManagedProcess, ServerError, free_ports

ROOT = Path(__file__).resolve().parent.parent
LIBS_ENV = "BRIDGE_KAFKA_LIBS"
INSTALL_HINT = "run `make install` (scripts/install-kafka.sh fetches the broker's jars from Maven Central)"

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = INFO
logger.auth.name = org.apache.kafka.common.security
logger.auth.level = INFO
logger.selector.name = org.apache.kafka.common.network.Selector
logger.selector.level = INFO
"""

_STARTED = "Kafka Server started"
_VERSION = re.compile(r"Kafka version: (\S+)")


def kafka_libs() -> Path:
    """The directory of the broker's jars: ``$BRIDGE_KAFKA_LIBS``, else ``.tools/kafka/libs`` of the checkout."""
    env = os.environ.get(LIBS_ENV)
    return Path(env) if env else ROOT / ".tools" / "kafka" / "libs"


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH; a clear error naming what to install otherwise."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServerError("Apache Kafka (the test broker) needs a JDK 17+ and none was found on PATH or in JAVA_HOME: "
                          "apt-get install -y openjdk-17-jdk-headless")
    return found


def jar_version(libs: Path) -> str | None:
    """The broker version from its jar's name (``kafka_2.13-4.4.0.jar`` -> ``4.4.0``)."""
    for jar in libs.glob("kafka_2.13-*.jar"):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return None


def cluster_id() -> str:
    """A new cluster id as ``StorageTool random-uuid`` makes it (16 random bytes, URL-safe base64 without
    padding, never starting with a dash), without a JVM start of its own."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass(slots=True)
class Listener:
    """One more listener on the broker: ``name`` (upper case), its security ``protocol`` and listener-scoped
    ``properties`` (written as ``listener.name.<name lower>.<key>=<value>``); ``port`` 0 picks a free one."""

    name: str
    protocol: str
    properties: Mapping[str, str] = field(default_factory=dict)
    port: int = 0

    @property
    def prefix(self) -> str:
        return f"listener.name.{self.name.lower()}."


class ApacheKafka(ManagedProcess):
    """One Apache Kafka node in KRaft mode; see the module docstring."""

    name: ClassVar[str] = "kafka"

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        heap_mb: int = 512,
        properties: Mapping[str, str | int] | None = None,
        listeners: Sequence[Listener] = (),
        scram_users: Mapping[str, str] | None = None,
        jvm_properties: Mapping[str, str] | None = None,
        libs: Path | None = None,
    ) -> None:
        super().__init__(host=host, port=port, log_dir=log_dir, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout)
        self.heap_mb = heap_mb
        self.extra_properties = {k: str(v) for k, v in (properties or {}).items()}
        self.listeners = list(listeners)
        self.scram_users = dict(scram_users or {})
        self.jvm_properties = dict(jvm_properties or {})
        self.libs = libs or kafka_libs()
        self.data_dir = self.log_dir / "data"
        self.controller_port = 0
        self.version: str | None = None
        self.started_in: float | None = None
        """Seconds from spawning the JVM to "Kafka Server started" (the last start)."""
        self._spawned_at = 0.0

    # -- where it listens ----------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """``host:port`` of the PLAINTEXT listener, for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    def listener_bootstrap(self, name: str) -> str:
        """``host:port`` of the extra listener ``name``."""
        for listener in self.listeners:
            if listener.name == name:
                return f"{self.host}:{listener.port}"
        raise KeyError(name)

    # -- ManagedProcess ------------------------------------------------------------------------------
    def command(self) -> list[str]:
        if not list(self.libs.glob("kafka_2.13-*.jar")):
            raise ServerError(f"Apache Kafka's jars are not in {self.libs}: {INSTALL_HINT}")
        java = java_binary()
        # the first start chooses the ports not given, all distinct; a restart keeps them all
        unset = [listener for listener in self.listeners if not listener.port]
        chosen = [listener.port for listener in self.listeners if listener.port]
        if self.controller_port:
            chosen.append(self.controller_port)
        ports = free_ports(len(unset) + (not self.controller_port), self.host, taken=chosen)
        if not self.controller_port:
            self.controller_port = ports.pop()
        for listener, port in zip(unset, ports, strict=True):
            listener.port = port
        props = self.log_dir / "server.properties"
        props.write_text(self._server_properties())
        log4j = self.log_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, props)
        self._spawned_at = time.monotonic()
        jvm = [f"-D{k}={v}" for k, v in self.jvm_properties.items()]
        return [java, f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", *jvm,
                "-cp", f"{self.libs}/*", "kafka.Kafka", str(props)]

    def after_start(self) -> None:
        """Wait for "Kafka Server started" in its log (the port opens a moment before the broker serves)."""
        assert self.process is not None
        deadline = self._spawned_at + self.startup_timeout
        while True:
            text = self.log_path.read_text(errors="replace")
            if _STARTED in text:
                break
            if self.process.poll() is not None:
                raise ServerError(f"kafka exited with {self.process.returncode} while starting; log:\n"
                                  f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"kafka did not start within {self.startup_timeout}s; log:\n{self.log_tail()}")
            time.sleep(0.05)
        self.started_in = time.monotonic() - self._spawned_at
        found = _VERSION.findall(text)
        self.version = found[-1] if found else jar_version(self.libs)
        self._fixed_port = self.port  # a restart comes back where the clients expect it, with its data

    def _server_properties(self) -> str:
        h, p, c = self.host, self.port, self.controller_port
        names = ["PLAINTEXT", *(x.name for x in self.listeners)]
        listeners = [f"PLAINTEXT://{h}:{p}", *(f"{x.name}://{h}:{x.port}" for x in self.listeners)]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT", *(f"{x.name}:{x.protocol}" for x in self.listeners)]
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": ",".join([*listeners, f"CONTROLLER://{h}:{c}"]),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.data_dir),
            # one node: the internal topics cannot have more replicas than that
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        assert len(set(names)) == len(names), f"listener names repeat: {names}"
        for listener in self.listeners:
            for key, value in listener.properties.items():
                props[listener.prefix + key] = value
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format(self, java: str, props: Path) -> None:
        """``StorageTool format`` once per data directory (a cluster id, SCRAM users)."""
        cp = ["-cp", f"{self.libs}/*", f"-Dlog4j2.configurationFile={self.log_dir / 'log4j2.properties'}"]
        cmd = [java, *cp, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c", str(props)]
        for user, password in self.scram_users.items():
            cmd += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines()
            said = [line for line in lines if not line.startswith("\tat ")]  # the messages, not the Java stack
            raise ServerError(f"kafka StorageTool format failed ({done.returncode}): " + "\n".join(said[-20:]))

    # -- topics --------------------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int = 3, *, config: Mapping[str, str] | None = None,
                     exist_ok: bool = True, timeout: float = 30.0) -> str:
        """Create ``topic`` (``partitions``, topic ``config``) and wait until every partition has a leader; return
        its name. Callable from a thread that runs an event loop (it uses one of its own in a worker thread)."""
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._create_topic(topic, partitions, dict(config or {}), exist_ok,
                                                        timeout)).result()
        return topic

    async def acreate_topic(self, topic: str, partitions: int = 3, *, config: Mapping[str, str] | None = None,
                            exist_ok: bool = True, timeout: float = 30.0) -> str:
        """``create_topic`` for async callers."""
        await self._create_topic(topic, partitions, dict(config or {}), exist_ok, timeout)
        return topic

    async def _create_topic(self, topic: str, partitions: int, config: dict[str, str], exist_ok: bool,
                            timeout: float) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(timeout * 1000))
        await admin.start()
        try:
            try:
                response: Any = await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
            except TopicAlreadyExistsError:
                if not exist_ok:
                    raise
                return
            for name, code, *rest in getattr(response, "topic_errors", []):
                if code == 36 and exist_ok:  # TOPIC_ALREADY_EXISTS
                    return
                if code:
                    raise ServerError(f"creating topic {name} failed: error {code} {rest}")
            await self._wait_leaders(admin, topic, partitions, timeout)
        finally:
            await admin.close()

    @staticmethod
    async def _wait_leaders(admin: Any, topic: str, partitions: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics([topic])
            parts = described[0].get("partitions", []) if described else []
            if len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts):
                return
            if time.monotonic() > deadline:
                raise ServerError(f"topic {topic}: partitions without a leader after {timeout}s: {parts}")
            await asyncio.sleep(0.05)

    def describe(self) -> str:
        """One line for logs: version, listeners, start time."""
        took = f"{self.started_in:.1f} s" if self.started_in is not None else "?"
        return (f"Apache Kafka {self.version or '?'} (KRaft, one node) at {self.bootstrap}, started in {took}, "
                f"heap {self.heap_mb} MB, pid {self.pid}")
