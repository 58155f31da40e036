"""One registry mechanism for every kind of connector (sources, sinks): a connector module declares, beside its
code, a connector record (its ``type`` tag, config model, factory, docs) and registers it when imported.

A ``Registry`` holds the connectors of one kind and gives the rest of the bridge what it needs from them:

- the config: ``Annotated[Settings, registry]`` is the pydantic type of an entry (``sources[]``, ``sink``): it is
  validated with the model its ``type`` names (errors keep their location), so ``bridge.config`` names no
  connector;
- the docs: ``connectors()`` in tag order, each with its docs sections (``bridge.config_docs``);
- the builder: ``connector(tag).build(...)``.

The modules of the connectors' package are imported on first use, so a new module is found without being named
anywhere else; a module that is not a connector (a checkpointer, an encoder) simply registers nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema


class Connector(Protocol):
    """What the registry reads of a connector record."""

    @property
    def tag(self) -> str: ...

    @property
    def config(self) -> type[BaseModel]: ...


K = TypeVar("K", bound=Connector)


class Registry(Generic[K]):
    """The connectors of one kind (``kind``: "source", "sink"), found in the package ``package``; an entry
    without ``type`` is a ``default`` one when given (the sink: Kafka)."""

    def __init__(self, kind: str, package: str, default: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self.default = default
        self._connectors: dict[str, K] = {}
        self._discovered = False

    def register(self, connector: K) -> K:
        """Add ``connector``; refuses a tag taken by another connector and a config model that does not carry it."""
        fields = connector.config.model_fields
        tag_field = fields.get("type")
        if tag_field is None or typing.get_args(tag_field.annotation) != (connector.tag,):
            raise ValueError(f"{self.kind} connector {connector.tag!r}: its config model "
                             f"{connector.config.__name__} needs a field `type: Literal[{connector.tag!r}]`")
        if "name" not in fields:
            raise ValueError(f"{self.kind} connector {connector.tag!r}: its config model needs a `name` field")
        known = self._connectors.get(connector.tag)
        if known is not None and known is not connector:
            raise ValueError(f"{self.kind} type {connector.tag!r} is already registered by {known.config.__module__}")
        self._connectors[connector.tag] = connector
        return connector

    def unregister(self, tag: str) -> None:
        """Remove a connector (tests that register one of their own)."""
        self._connectors.pop(tag, None)

    def _discover(self) -> None:
        """Import every module of the package once: connector modules register themselves."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def connectors(self) -> list[K]:
        """Every registered connector, by tag (whatever order their modules were imported in)."""
        self._discover()
        return [self._connectors[tag] for tag in sorted(self._connectors)]

    def connector(self, tag: str) -> K:
        self._discover()
        found = self._connectors.get(tag)
        if found is None:
            raise KeyError(f"unknown {self.kind} type {tag!r} (known: {', '.join(sorted(self._connectors))})")
        return found

    def validate(self, value: Any) -> Any:
        """A config entry (mapping or model) validated with the model its ``type`` names."""
        self._discover()
        models = tuple(c.config for c in self._connectors.values())
        if isinstance(value, models):
            return value
        known = ", ".join(sorted(self._connectors))
        if not isinstance(value, Mapping):
            raise PydanticCustomError(self.kind, f"a {self.kind} must be a mapping with a type ({known}), not "
                                      f"{type(value).__name__}")
        tag = value.get("type", self.default)
        if tag is None:
            raise PydanticCustomError(f"{self.kind}_type", f"give the {self.kind}'s type: one of {known}")
        found = self._connectors.get(tag) if isinstance(tag, str) else None
        if found is None:
            raise PydanticCustomError(f"{self.kind}_type", f"unknown {self.kind} type {tag!r}: expected one of {known}")
        return found.config.model_validate(value)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        """The registry is the pydantic type of one entry: ``Annotated[Settings, registry]`` (see ``validate``)."""
        return core_schema.no_info_plain_validator_function(self.validate)
