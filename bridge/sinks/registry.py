"""The registry of sink connectors: a sink registers like a source (``bridge.sources.registry``), through the same
mechanism (``bridge.connectors.Registry``).

Each sink module declares, beside its code, one ``SinkConnector``: its ``type`` tag (the ``type:`` of the
``sink`` entry; an entry without one is a Kafka sink), its config model, its factory and the text of its docs
section, and registers it when imported. ``SinkConfig`` validates the ``sink`` entry with the model its ``type``
names, ``build`` makes the sink of a validated entry, and ``bridge.config_docs`` renders one section per
connector: the daemon and the config name no sink class. The Kafka sink (``kafka``) and the JSON Lines sink
(``jsonl``, also what ``bridge replay`` writes) are the two the bridge ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from bridge.connectors import Registry
from bridge.model import Sink

C = TypeVar("C", bound=BaseModel)


class SinkSettings(Protocol):
    """What every sink config model has: its ``type`` tag, the sink's ``name``, and how many publish groups the
    pipeline may hand it before the oldest is confirmed."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def max_inflight_groups(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SinkConnector(Generic[C]):
    """One kind of sink: ``tag``, ``config`` model (with ``type: Literal[tag]`` and ``name``), ``build`` factory,
    and the ``summary`` introducing its section of docs/configuration.md (``docs``: sections of nested models)."""

    tag: str
    config: type[C]
    build: Callable[[C], Sink]
    summary: str
    docs: tuple[tuple[str, type[BaseModel], str], ...] = field(default=())


_REGISTRY: Registry[SinkConnector[Any]] = Registry("sink", "bridge.sinks", default="kafka")


register = _REGISTRY.register
unregister = _REGISTRY.unregister
connectors = _REGISTRY.connectors
connector = _REGISTRY.connector


def build(config: SinkSettings) -> Sink:
    """The sink of a validated ``sink`` entry."""
    return connector(config.type).build(config)


SinkConfig = Annotated[SinkSettings, _REGISTRY]
"""The type of the ``sink`` entry in ``BridgeConfig``: any registered sink connector's config."""
