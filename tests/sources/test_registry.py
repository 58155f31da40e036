"""The connector registry: a source is one module that registers itself; its config, docs and builder follow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from bridge.config import ConfigError, parse_config
from bridge.config_docs import render
from bridge.daemon import Daemon
from bridge.sources.registry import SourceConnector, SourceResources, connectors, register, unregister
from bridge.testing import CapturingSink, InMemorySource
from bridge.testing.events import sagemaker_training_event
from testbed.waiting import wait_for


class EchoConfig(BaseModel):
    """A throwaway connector's config, declared by the test as a connector module would."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["echo"] = "echo"
    name: str = Field("echo", description="source name")
    jobs: list[str] = Field(default_factory=list, description="one SageMaker training event per job name")


class EchoSource(InMemorySource):
    """Yields one event per configured job; keeps what the daemon handed it."""

    def __init__(self, config: EchoConfig, resources: SourceResources) -> None:
        super().__init__([sagemaker_training_event(f"id-{job}", job, i) for i, job in enumerate(config.jobs)],
                         name=config.name)
        self.resources = resources


@pytest.fixture
def echo() -> Iterator[list[EchoSource]]:
    """Registers the echo connector for one test; yields the sources it builds."""
    built: list[EchoSource] = []

    def build(config: EchoConfig, resources: SourceResources) -> EchoSource:
        built.append(EchoSource(config, resources))
        return built[-1]

    register(SourceConnector(tag="echo", config=EchoConfig, build=build,
                             summary="Echo: yields the events its config names (a test connector)."))
    try:
        yield built
    finally:
        unregister("echo")


def test_a_registered_connector_is_a_config_type_with_located_errors(echo: list[EchoSource]) -> None:
    """Once registered, ``type: echo`` validates with the connector's own model, and its errors carry the entry's
    location like any built-in source's."""
    cfg = parse_config({"sources": [{"type": "echo", "name": "e1", "jobs": ["a"]}, {"type": "sqs", "queue_url": "q"}]})
    assert isinstance(cfg.sources[0], EchoConfig) and cfg.sources[0].jobs == ["a"]
    assert cfg.sources[1].type == "sqs"
    with pytest.raises(ConfigError) as bad:
        parse_config({"sources": [{"type": "echo", "jobs": "a", "nope": 1}, {"type": "kafka", "topics": []}]})
    locations = [loc for loc, _ in bad.value.errors]
    assert locations == ["sources[0].jobs", "sources[0].nope", "sources[1].topics"], bad.value.errors
    with pytest.raises(ConfigError) as unknown:
        parse_config({"sources": [{"type": "ech0"}]})
    assert unknown.value.errors == [("sources[0]", "unknown source type 'ech0': expected one of echo, eventhubs, "
                                                   "kafka, sqs")]


def test_a_registered_connector_gets_its_section_in_the_configuration_reference(echo: list[EchoSource]) -> None:
    """docs/configuration.md's generator documents the registered connector with its fields and descriptions."""
    text = render()
    section = text[text.index("## `sources[] (type: echo)`"):]
    assert "Echo: yields the events its config names (a test connector)." in section
    assert "| `jobs` | `list[str]` | (see below) | one SageMaker training event per job name |" in section


async def test_the_daemon_builds_a_registered_connector_with_the_budget_and_its_prefetch_share(
    echo: list[EchoSource],
) -> None:
    """``bridge run`` builds the registered connector's source from its config entry, hands it the memory budget
    and its share of prefetch bytes, and its events flow to the sink."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False},
                        "sources": [{"type": "echo", "name": "e1", "jobs": ["a", "b"]},
                                    {"type": "echo", "name": "e2", "jobs": ["c"]}]})
    sink = CapturingSink()
    daemon = Daemon(cfg, sink=sink)
    assert [s.name for s in daemon.sources] == ["e1", "e2"] and daemon.sources == echo
    share = daemon.plan.source_bytes // 2
    assert all(s.resources == SourceResources(daemon.budget, share) for s in echo)
    runner = asyncio.create_task(daemon.run())
    await wait_for(lambda: len(sink.routed) == 3, what="three events from two echo sources")
    daemon.request_stop()
    assert await asyncio.wait_for(runner, 10) == 0
    assert sorted(r.event.id for r in sink.routed) == ["id-a", "id-b", "id-c"]


def test_register_refuses_a_model_without_its_tag_and_a_taken_tag() -> None:
    """A connector whose model does not carry ``type: Literal[tag]``, or whose tag another connector has, is refused
    at registration, not at the first config that names it."""

    class Untagged(BaseModel):
        name: str = "x"

    with pytest.raises(ValueError, match="needs a field `type: Literal\\['other'\\]`"):
        register(SourceConnector(tag="other", config=Untagged, build=lambda c, r: InMemorySource(), summary=""))

    class AnotherKafka(BaseModel):
        type: Literal["kafka"] = "kafka"
        name: str = "k"

    with pytest.raises(ValueError, match=r"'kafka' is already registered by bridge\.sources\.kafka"):
        register(SourceConnector(tag="kafka", config=AnotherKafka, build=lambda c, r: InMemorySource(), summary=""))
    assert {c.tag: c.config for c in connectors()}["kafka"].__name__ == "KafkaSourceConfig"


def test_the_built_in_connectors_are_found_by_their_modules_alone() -> None:
    """Kafka, SQS and Event Hubs are registered by their own modules, found without being named elsewhere."""
    found = {c.tag: c.config.__module__ for c in connectors()}
    assert found == {"eventhubs": "bridge.sources.eventhubs", "kafka": "bridge.sources.kafka",
                     "sqs": "bridge.sources.sqs"}
