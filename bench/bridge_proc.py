"""The bridge under test, as a separate process (``bridge run --config FILE``, i.e. ``bridge.cli.main``).

With a ``prelude`` (see bench/whatif.py) the process is ``python -c "<prelude>; main()" run --config FILE``.

A subprocess gives the bridge its own interpreter (no GIL shared with the load generator) and a clean
peak RSS (``VmHWM``). ``bench_config`` is the full pipeline the issue asks for: Kafka source, normalize,
dedup, reorder, two routes with filters in each dialect, dead-letter topic, Kafka sink (binary mode).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.brokers import Broker
from bench.memory import peak_rss_mb, rss_mb
from bridge.config import parse_config
from testbed.servers import free_port

# Route 1, EventBridge dialect: every job event that is past "pending".
JOBS_PATTERN: dict[str, Any] = {"type": [{"prefix": "ml.job."}], "status": [{"anything-but": ["pending"]}]}
# Route 2, Event Grid dialect: models, endpoints, drift and completed jobs, from both clouds.
MODELS_FILTER: dict[str, Any] = {
    "includedEventTypes": [
        "ml.model.registered", "ml.endpoint.status_changed", "ml.data.drift_detected", "ml.job.completed",
    ],
    "advancedFilters": [{"operatorType": "StringIn", "key": "platform", "values": ["azureml", "sagemaker"]}],
}


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one bridge run."""

    input: str
    jobs: str
    models: str
    deadletter: str

    @property
    def routed(self) -> list[str]:
        return [self.jobs, self.models]

    @property
    def outputs(self) -> list[str]:
        return [self.jobs, self.models, self.deadletter]

    @classmethod
    def named(cls, prefix: str) -> Topics:
        return cls(f"{prefix}.in", f"{prefix}.jobs", f"{prefix}.models", f"{prefix}.deadletter")


def extra_routes(topics: Topics, n: int) -> list[dict[str, Any]]:
    """``n`` routes beyond the two (the cost of a growing filter set): EventBridge patterns and CESQL expressions
    alternately, on the same fields as the two routes (type, status, platform) plus a subject prefix no bench
    subject has, so each is evaluated as far as its last test on most events and adds no output records."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        topic = topics.jobs if i % 2 else topics.models
        if i % 2:
            flt: dict[str, Any] = {"cesql": f"type = 'ml.job.status_changed' AND platform IN ('azureml', 'sagemaker') "
                                            f"AND subject LIKE 'route{i}/%'"}
        else:
            flt = {"eventbridge": {"type": [{"prefix": "ml."}], "status": [{"anything-but": ["pending"]}],
                                   "subject": [{"prefix": f"route{i}/"}]}}
        out.append({"name": f"extra{i}", "topic": topic, "filters": [flt]})
    return out


def bench_config(bootstrap: str, topics: Topics, group: str, http_port: int, *, idempotent: bool,
                 max_delay_ms: int | None = None, fetch_max_wait_ms: int | None = None,
                 sink_linger_ms: int | None = None, delivery: dict[str, Any] | None = None,
                 routes: int = 2) -> dict[str, Any]:
    """The bridge configuration of a run: defaults everywhere except the topics, the sink's idempotence (the
    broker's producer family, bench/brokers.py), ``delivery`` (exactly_once and its transaction sizes), for
    the latency run ``max_delay_ms`` and the source's ``fetch_max_wait_ms`` (see bench/latency.py), and ``routes``
    (more than the two routes: ``extra_routes``)."""
    reorder: dict[str, Any] = {"enabled": True}
    if max_delay_ms is not None:
        reorder["max_delay_ms"] = max_delay_ms
    cfg: dict[str, Any] = {
        "http": {"host": "127.0.0.1", "port": http_port},
        "log": {"level": "warning", "format": "json"},
        "sources": [{"type": "kafka", "name": "bench", "bootstrap_servers": bootstrap,
                     "topics": [topics.input], "group_id": group}],
        "dedup": {"enabled": True, "store": "memory"},
        "reorder": reorder,
        "routes": [
            {"name": "jobs", "topic": topics.jobs, "filters": [{"eventbridge": JOBS_PATTERN}]},
            {"name": "models", "topic": topics.models, "filters": [{"eventgrid": MODELS_FILTER}]},
            *extra_routes(topics, routes - 2),
        ],
        "deadletter": {"topic": topics.deadletter},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap, "enable_idempotence": idempotent},
    }
    if delivery:
        cfg["delivery"] = delivery
    if fetch_max_wait_ms is not None:
        cfg["sources"][0]["fetch_max_wait_ms"] = fetch_max_wait_ms
    if sink_linger_ms is not None:
        cfg["sink"]["linger_ms"] = sink_linger_ms
    # experiments: BENCH_SINK='{"max_inflight_groups": 1}' overrides sink settings of every bridge the bench runs
    cfg["sink"].update(orjson.loads(os.environ.get("BENCH_SINK", "{}")))
    parse_config(cfg, env={})  # fail here, not in the child, if the config is invalid
    return cfg


def baseline_command(broker: Broker, source: str, target: str, records: int, group: str) -> list[str]:
    """The raw pass-through (bench/baseline.py) from ``source`` to ``target``, with the broker's producer family."""
    return [sys.executable, "-m", "bench.baseline", "--bootstrap", broker.bootstrap, "--input", source,
            "--output", target, "--expect", str(records), "--group", group,
            "--idempotence" if broker.idempotent else "--no-idempotence"]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {name: value}, summed over labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


class BridgeProcess:
    """``bridge run`` in a child process, with its HTTP endpoints and /proc figures."""

    def __init__(self, cfg: dict[str, Any], workdir: Path, name: str, prelude: str | None = None) -> None:
        self.cfg = cfg
        self.port = int(cfg["http"]["port"])
        self.workdir = workdir
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.prelude = prelude  # Python run in the bridge process before the CLI (what-if experiments)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        cmd = [sys.executable, "-m", "bridge.cli", "run", "--config", str(self.config_path)]
        if self.prelude:
            code = f"{self.prelude}\nimport sys\nfrom bridge.cli import main\nsys.exit(main(sys.argv[1:]))"
            cmd = [sys.executable, "-c", code, *cmd[3:]]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"bridge not ready within {timeout}s; log:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as resp:
            return parse_metrics(resp.read().decode())

    def rss(self) -> tuple[float, float]:
        """(current, peak) RSS of the bridge in MiB."""
        return rss_mb(self.pid), peak_rss_mb(self.pid)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def new_http_port() -> int:
    return free_port()
