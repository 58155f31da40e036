"""The state of an event for ``changes_only`` routes: the values of a few attributes, as comparable bytes.

A route's ``state_attributes`` are paths into the canonical CloudEvent: a context attribute or extension
(``status``, ``type``, ``platform``), or a key path into ``data`` (``data.SecondaryStatus``,
``data.ModelTags.stage``; a number selects a list element). The values are taken once, at admission (the
parsed event does not live longer), and packed into short bytes: one string value as is, several values or
non-string values as JSON, anything longer than 32 bytes as a 16-byte digest. Equal bytes mean an unchanged
state. A missing attribute is ``null``: an event without a status has a state too (the absent one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from bridge import jsonutil
from bridge.envelope import CloudEvent

PATH_PATTERN: Final = r"^[A-Za-z0-9_-]+(\.[^.\s]+)*$"
_PATH: Final = re.compile(PATH_PATTERN)
_MAX_INLINE: Final = 32
_MISSING: Final = object()

Getter = Callable[[CloudEvent], Any]


def _attribute(name: str) -> Getter:
    if name == "partitionkey":
        name = "subject"
    if name in ("id", "source", "type", "subject", "time", "platform", "origtype", "sequence", "status",
                "datacontenttype", "data"):
        return lambda ev: getattr(ev, name)
    if name == "specversion":
        return lambda ev: "1.0"
    return lambda ev: ev.extensions.get(name)


def _walk(value: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
        if value is _MISSING:
            return None
    return value


def getter(path: str) -> Getter:
    """A function reading ``path`` (see the module docstring) from a canonical event."""
    if not _PATH.match(path):
        raise ValueError(f"invalid attribute path {path!r}: use a name or dotted keys, e.g. status, "
                         "data.SecondaryStatus")
    head, *rest = path.split(".")
    first = _attribute(head)
    if not rest:
        return first
    return lambda ev: _walk(first(ev), rest)


class StateSpec:
    """The attributes defining the state of one or more ``changes_only`` routes."""

    __slots__ = ("_getters", "paths")

    def __init__(self, paths: Sequence[str]) -> None:
        if not paths:
            raise ValueError("a state needs at least one attribute")
        self.paths = tuple(paths)
        self._getters = tuple(getter(p) for p in self.paths)

    def value(self, event: CloudEvent) -> bytes:
        """The event's state as bytes (equal bytes: the same state)."""
        getters = self._getters
        if len(getters) == 1:
            v = getters[0](event)
            raw = v.encode() if isinstance(v, str) else b"\x00" + jsonutil.dumps(v)
        else:
            raw = b"\x00" + jsonutil.dumps([g(event) for g in getters])
        if len(raw) > _MAX_INLINE:
            return b"\x01" + hashlib.blake2b(raw, digest_size=16).digest()
        return raw
