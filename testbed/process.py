"""Drive ``bridge run`` as a subprocess (for end-to-end tests, crash tests, the local stack and the bench)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from testbed.servers import free_port
from testbed.waiting import ConditionNotReached, wait_for_sync


class BridgeProcess:
    """``bridge run --config`` on a config dict written to ``workdir``; HTTP on ``port`` (default: a free one,
    so a restarted bridge can take over the address of the one before it)."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "bridge", port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        cfg = dict(config)
        cfg["http"] = {"host": "127.0.0.1", "port": self.port}
        self.config_path = self.workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
        )
        return self

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def wait_http(self, path: str = "/healthz", status: int = 200, timeout: float = 60.0) -> None:
        def answered() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.get(path)[0] == status
            except OSError:
                return False

        wait_for_sync(answered, within=timeout, every=0.2,
                      what=lambda: f"{path} answering {status}:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_http("/readyz", 200, timeout)

    def metrics(self) -> dict[str, float]:
        """Every ``bridge_*`` sample of /metrics, keyed by the sample name with its labels."""
        _, body = self.get("/metrics", timeout=5)
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line.startswith("bridge_"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == prefix or k.startswith(prefix + "{"))

    def consumer_lag(self, source: str) -> dict[str, float]:
        """``bridge_consumer_lag`` of one source, keyed by its ``partition`` label."""
        return {
            k.split('partition="', 1)[1].split('"', 1)[0]: v
            for k, v in self.metrics().items()
            if k.startswith("bridge_consumer_lag{") and f'source="{source}"' in k
        }

    def wait_for_zero_lag(self, source: str, partitions: set[str], timeout: float = 10.0) -> dict[str, float]:
        """Poll until every one of ``partitions`` reports lag 0; return the last reading (checked by the caller)."""
        lag = self.consumer_lag(source)

        def caught_up() -> bool:
            nonlocal lag
            lag = self.consumer_lag(source)
            return set(lag) == partitions and not any(lag.values())

        with contextlib.suppress(ConditionNotReached):
            wait_for_sync(caught_up, within=timeout, every=0.2)
        return lag

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> BridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
