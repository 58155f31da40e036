"""Shared helpers of the bridge.state tests: SageMaker events with a SecondaryStatus, pipelines from configs,
the bridge writing a state topic on a broker, the ``bridge`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bridge.app import build_pipeline
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.model import RawMessage, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.sinks.kafka import KafkaSink
from bridge.state.store import StateStore
from bridge.state.topic import ensure_state_topic
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink

ROOT = Path(__file__).resolve().parents[2]


def job_event(id: str, job: str, second: int, status: str = "InProgress", secondary: str = "Training",
              account: str = "123456789012") -> dict[str, Any]:
    """A raw SageMaker training job state change at 2024-01-01 + ``second`` s with the given SecondaryStatus."""
    ev = sagemaker_training_event(id, job, second, status, account=account)
    ev["detail"]["SecondaryStatus"] = secondary
    return ev


def pipeline(cfg: dict[str, Any], sink: CapturingSink | None = None, state_store: StateStore | None = None) -> Pipeline:
    """A pipeline built from a config dict (as ``bridge run`` builds it), publishing into ``sink``; with
    ``state_store``, its last states live there (two pipelines sharing one: a restart, or replicas)."""
    return build_pipeline(parse_config(cfg), sink if sink is not None else CapturingSink(), Metrics(),
                          state_store=state_store)


def batch(*events: dict[str, Any], source: str = "src") -> SourceBatch:
    return SourceBatch([RawMessage(orjson.dumps(e), {}, source, f"{source}@{i}") for i, e in enumerate(events)],
                       None, source)


async def feed(p: Pipeline, *events: dict[str, Any], source: str = "src") -> None:
    """Submit the events as one batch and wait until everything is delivered (reorder buffer flushed)."""
    await p.submit(batch(*events, source=source))
    await p.flush()


def published(sink: CapturingSink, route: str) -> list[tuple[str, str | None, str]]:
    """(id, status, SecondaryStatus) of what ``route`` published, in order."""
    return [(d.event.id, d.event.status, (d.event.data or {}).get("SecondaryStatus", ""))
            for d in sink.routed if d.route == route]


async def write_state(data: dict[str, Any], *batches: SourceBatch) -> str:
    """What ``bridge run`` does with the config ``data`` (a Kafka sink and a state topic) for the batches: the
    state topic created or checked, each batch submitted in turn, everything delivered. Returns what
    ``ensure_state_topic`` found or did (``created``, ``compacted``, ...)."""
    cfg = parse_config(data)
    assert cfg.sink is not None
    found = await ensure_state_topic(cfg.sink, cfg.state)
    sink = KafkaSink(cfg.sink)
    await sink.start()
    p = build_pipeline(cfg, sink, Metrics())
    try:
        for b in batches:
            await p.submit(b)
        await p.flush()
    finally:
        await p.close(grace=5)
        await sink.stop()
    return found


def bridge_cli(*args: str, stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """``bridge ARGS`` in a child process (stdout and, unless redirected, stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], stdout=subprocess.PIPE, stderr=stderr,
                          text=True, timeout=120, cwd=ROOT, check=False)
