"""Field access with precise errors, shared by the shape readers."""

from __future__ import annotations

from typing import Any

from bridge.normalize.errors import NormalizeError
from bridge.normalize.timeutil import CACHE as _time_cache
from bridge.normalize.timeutil import normalize_time


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_kind(value: object) -> str:
    """The JSON type name of a parsed value ("object", "array", "string", "number", ...)."""
    return "string" if isinstance(value, str) else _kind(value)


def shown(value: object, limit: int = 60) -> str:
    """A short, always computable rendering of a value for an error reason: a scalar's repr cut to ``limit``
    characters, a container as its JSON kind (``repr`` of data nested 1000 levels deep overflows the stack)."""
    if isinstance(value, dict | list):
        return f"a JSON {json_kind(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a {len(str(abs(value)))}-digit integer" if value.bit_length() < 14000 else "a huge integer"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_str(ev: dict[str, Any], key: str) -> str:
    """A required non-empty string field."""
    value = ev.get(key)
    if type(value) is str and value:
        return value
    if value is None:
        raise NormalizeError(f"missing required field '{key}'")
    if value == "":
        raise NormalizeError(f"empty required field '{key}'")
    raise NormalizeError(f"invalid field '{key}': expected a string, got {json_kind(value)}")


def require_id(ev: dict[str, Any], key: str = "id") -> str:
    """The required event id; an integer id is accepted and written as a string."""
    value = ev.get(key)
    if type(value) is str and value:
        return value
    if type(value) is int:
        return str(value)
    return require_str(ev, key)


def require_time(ev: dict[str, Any], key: str) -> str:
    """A required timestamp field in canonical form."""
    value = ev.get(key)
    if type(value) is str:
        hit = _time_cache.get(value)
        if hit is not None:
            return hit
    if value is None:
        raise NormalizeError(f"missing required field '{key}'")
    if value == "":
        raise NormalizeError(f"empty required field '{key}'")
    canonical = normalize_time(value)
    if canonical is None:
        raise NormalizeError(f"invalid timestamp in field '{key}': {shown(value)}")
    return canonical


def first_str(value: object) -> str | None:
    """A non-empty string, or the first non-empty string of a list (orjson keeps the last of duplicate keys,
    and EventBridge examples repeat ``source`` as a list); ``None`` otherwise."""
    if type(value) is str:
        return value or None
    if type(value) is list:
        for item in value:
            if type(item) is str and item:
                return item
    return None
