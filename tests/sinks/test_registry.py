"""The sink registry: sinks register like sources; the config, the docs and the daemon's builder follow it, so a
JSON Lines sink, or a sink a test registers, runs under `bridge run` without the daemon naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from bridge.config import ConfigError, parse_config
from bridge.config_docs import render
from bridge.daemon import Daemon
from bridge.sinks.jsonl import JsonlSinkConfig
from bridge.sinks.kafka import KafkaSinkConfig
from bridge.sinks.registry import SinkConnector, connectors, register, unregister
from bridge.testing import CapturingSink, InMemorySource
from bridge.testing.events import sagemaker_training_event
from testbed.waiting import wait_for


def test_the_sink_entry_is_validated_by_its_type_and_kafka_without_one() -> None:
    """`type: jsonl` gives the JSON Lines sink's model, no type the Kafka sink's; an unknown type or a key of
    another sink's model is an error located at `sink`."""
    assert isinstance(parse_config({"sink": {"type": "jsonl", "path": "out.jsonl"}}).sink, JsonlSinkConfig)
    assert isinstance(parse_config({"sink": {"bootstrap_servers": "k:9092"}}).sink, KafkaSinkConfig)
    assert [c.tag for c in connectors()] == ["jsonl", "kafka"]
    with pytest.raises(ConfigError) as err:
        parse_config({"sink": {"type": "smtp"}})
    assert err.value.errors == [("sink", "unknown sink type 'smtp': expected one of jsonl, kafka")]
    with pytest.raises(ConfigError) as err:
        parse_config({"sink": {"type": "jsonl", "bootstrap_servers": "k:9092"}})
    assert [loc for loc, _ in err.value.errors] == ["sink.bootstrap_servers"]


async def test_bridge_run_with_a_jsonl_sink_writes_one_line_per_published_record(tmp_path: Path) -> None:
    """The daemon builds the JSON Lines sink from the config through the registry: every event becomes one line
    of the replay format, and the source's batches are acked."""
    out = tmp_path / "out.jsonl"
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False},
                        "sink": {"type": "jsonl", "path": str(out)}})
    src = InMemorySource([sagemaker_training_event(f"e{i}", "job", i) for i in range(3)], name="mem")
    daemon = Daemon(cfg, sources=[src])
    runner = asyncio.create_task(daemon.run())
    try:
        await wait_for(lambda: out.exists() and len(out.read_bytes().splitlines()) == 3 and src.all_acked_once,
                       within=20, what="three lines written and the batch acked")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 10) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [(x["route"], x["topic"], x["event"]["id"]) for x in lines] == [("all", "ml.events", f"e{i}")
                                                                           for i in range(3)]


class MemoryConfig(BaseModel):
    """A throwaway sink's config, declared by the test as a sink module would."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["memory"] = "memory"
    name: str = Field("memory", description="sink name")
    max_inflight_groups: int = Field(2, description="groups in flight")


@pytest.fixture
def memory_sink() -> Iterator[list[CapturingSink]]:
    """Registers the `memory` sink connector for one test; yields the sinks it builds."""
    built: list[CapturingSink] = []

    def build(config: MemoryConfig) -> CapturingSink:
        built.append(CapturingSink())
        return built[-1]

    register(SinkConnector(tag="memory", config=MemoryConfig, build=build, summary="Memory: a test sink."))
    try:
        yield built
    finally:
        unregister("memory")


async def test_a_registered_sink_is_configured_documented_and_run_by_the_daemon(
    memory_sink: list[CapturingSink],
) -> None:
    """A sink connector registered by a test becomes a `sink` type with its docs section, and `bridge run` builds
    it, hands it the configured number of groups in flight and publishes to it."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False},
                        "sink": {"type": "memory"}})
    assert "## `sink (type: memory)`" in render()
    src = InMemorySource([sagemaker_training_event("m1", "job", 1)], name="mem")
    daemon = Daemon(cfg, sources=[src])
    assert daemon.pipeline.delivery.depth == 2
    runner = asyncio.create_task(daemon.run())
    try:
        await wait_for(lambda: memory_sink and memory_sink[0].records and src.all_acked_once, within=20,
                       what="published to the registered sink")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 10) == 0
    assert [d.event.id for d in memory_sink[0].routed] == ["m1"]
