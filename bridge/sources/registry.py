"""The registry of source connectors: adding a source is one new module in ``bridge/sources/`` (plus its tests).

Each connector module declares, beside its code, one ``SourceConnector``: its ``type`` tag (the ``type:`` of a
``sources[]`` entry), its config model, its factory, and the text of its docs sections, and registers it with
``register`` when imported. Everything else comes from here:

- the config: ``SourceConfig`` validates a ``sources[]`` entry with the model its ``type`` names (errors keep
  their location, ``sources[1].queue_url``), so ``bridge.config`` names no connector;
- the docs: ``bridge.config_docs`` renders one section per connector (and its nested models);
- the builder: ``build`` makes the source of a validated entry with what the daemon hands every source
  (``SourceResources``: the memory budget and the source's share of prefetch bytes).

The modules of this package are imported on first use (``connectors()``), so a new module is found without
being named anywhere else; a module that is not a connector (``checkpoint``) simply registers nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

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


_REGISTRY: dict[str, SourceConnector[Any]] = {}
_discovered = False


def register(connector: SourceConnector[C]) -> SourceConnector[C]:
    """Add ``connector``; refuses a tag taken by another connector and a config model that does not carry it."""
    fields = connector.config.model_fields
    tag_field = fields.get("type")
    if tag_field is None or typing.get_args(tag_field.annotation) != (connector.tag,):
        raise ValueError(f"source connector {connector.tag!r}: its config model {connector.config.__name__} needs "
                         f"a field `type: Literal[{connector.tag!r}]`")
    if "name" not in fields:
        raise ValueError(f"source connector {connector.tag!r}: its config model needs a `name` field")
    known = _REGISTRY.get(connector.tag)
    if known is not None and known is not connector:
        raise ValueError(f"source type {connector.tag!r} is already registered by {known.config.__module__}")
    _REGISTRY[connector.tag] = connector
    return connector


def unregister(tag: str) -> None:
    """Remove a connector (tests that register one of their own)."""
    _REGISTRY.pop(tag, None)


def _discover() -> None:
    """Import every module of ``bridge.sources`` once: connector modules register themselves."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import bridge.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def connectors() -> list[SourceConnector[Any]]:
    """Every registered connector, by tag (whatever order their modules were imported in)."""
    _discover()
    return [_REGISTRY[tag] for tag in sorted(_REGISTRY)]


def connector(tag: str) -> SourceConnector[Any]:
    _discover()
    found = _REGISTRY.get(tag)
    if found is None:
        raise KeyError(f"unknown source type {tag!r} (known: {', '.join(sorted(_REGISTRY))})")
    return found


def build(config: SourceSettings, resources: SourceResources | None = None) -> Source:
    """The source of one validated ``sources[]`` entry."""
    return connector(config.type).build(config, resources or SourceResources())


def _validate(value: Any) -> Any:
    _discover()
    models = tuple(c.config for c in _REGISTRY.values())
    if isinstance(value, models):
        return value
    known = ", ".join(sorted(_REGISTRY))
    if not isinstance(value, Mapping):
        raise PydanticCustomError("source", f"a source must be a mapping with a type ({known}), not "
                                  f"{type(value).__name__}")
    tag = value.get("type")
    if tag is None:
        raise PydanticCustomError("source_type", f"give the source's type: one of {known}")
    found = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if found is None:
        raise PydanticCustomError("source_type", f"unknown source type {tag!r}: expected one of {known}")
    return found.config.model_validate(value)


class _Registered:
    """Pydantic hook: a ``sources[]`` entry is validated by the model of the connector its ``type`` names."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_validate)


SourceConfig = Annotated[SourceSettings, _Registered]
"""The type of a ``sources[]`` entry in ``BridgeConfig``: any registered connector's config."""
