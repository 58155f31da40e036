"""The registry of source connectors: adding a source is one new module in ``bridge/sources/`` (plus its tests).

Each connector module declares, beside its code, one ``SourceConnector``: its ``type`` tag (the ``type:`` of a
``sources[]`` entry), its config model, its factory, and the text of its docs sections, and registers it with
``register`` when imported. Everything else comes from here (the mechanism is ``bridge.connectors.Registry``,
shared with the sinks' registry):

- the config: ``SourceConfig`` validates a ``sources[]`` entry with the model its ``type`` names (errors keep
  their location, ``sources[1].queue_url``), so ``bridge.config`` names no connector;
- the docs: ``bridge.config_docs`` renders one section per connector (and its nested models);
- the builder: ``build`` makes the source of a validated entry with what the daemon hands every source
  (``SourceResources``: the memory budget and the source's share of prefetch bytes).

The modules of this package are imported on first use (``connectors()``), so a new module is found without
being named anywhere else; a module that is not a connector (``checkpoint``) simply registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from bridge.connectors import Registry
from bridge.limits import MemoryBudget
from bridge.model import Source

C = TypeVar("C", bound=BaseModel)


class SourceSettings(Protocol):
    """What every source config model has: its ``type`` tag and the source's ``name``."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SourceResources:
    """What the daemon hands every source it builds: the memory budget sources charge what they fetch to, and this
    source's share of the bytes sources may prefetch (``bridge.limits``)."""

    budget: MemoryBudget | None = None
    prefetch_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SourceConnector(Generic[C]):
    """One kind of source: ``tag`` (what ``type:`` says in the config), ``config`` model (with a
    ``type: Literal[tag]`` and a ``name`` field), ``build`` factory, and docs: ``summary`` introduces its section
    of docs/configuration.md, ``docs`` adds sections for nested models as ``(key, model, text)`` (rendered as
    ``sources[].<key> (type: <tag>)``)."""

    tag: str
    config: type[C]
    build: Callable[[C, SourceResources], Source]
    summary: str
    docs: tuple[tuple[str, type[BaseModel], str], ...] = field(default=())


_REGISTRY: Registry[SourceConnector[Any]] = Registry("source", "bridge.sources")


register = _REGISTRY.register
unregister = _REGISTRY.unregister
connectors = _REGISTRY.connectors
connector = _REGISTRY.connector


def build(config: SourceSettings, resources: SourceResources | None = None) -> Source:
    """The source of one validated ``sources[]`` entry."""
    return connector(config.type).build(config, resources or SourceResources())


SourceConfig = Annotated[SourceSettings, _REGISTRY]
"""The type of a ``sources[]`` entry in ``BridgeConfig``: any registered connector's config."""
