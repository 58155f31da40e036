"""Azure Event Grid subscription filters, compiled once to closures.

Semantics (Microsoft Learn, "Understand event filtering for Event Grid subscriptions"):

* ``includedEventTypes``: the event type must be one of them (case-insensitive); ``"All"``, an empty list or
  no list means every type. The event type is ``eventType`` (Event Grid schema) or ``type`` (CloudEvents and
  the canonical envelope); on a canonical event the original type ``origtype`` is accepted too, so existing
  Azure filters (``Microsoft.MachineLearningServices.RunCompleted``) keep working unchanged.
* ``subjectBeginsWith`` / ``subjectEndsWith``: on ``subject``, case-insensitive unless
  ``isSubjectCaseSensitive``.
* ``advancedFilters``: AND of filters; within one filter the values are OR'd, except for the NOT operators
  (``NumberNotIn``, ``NumberNotInRange``, ``String Not*``) which fail when ANY value matches. String
  comparisons are case-insensitive; string operators read numbers and booleans through their JSON text (as
  the docs' CloudEvents extension example does), number and bool operators never read strings; values an
  operator cannot read (null, objects) are ignored.
* missing key: no match, except ``NumberNotIn``, ``StringNotIn`` (documented) and ``NumberNotInRange`` (by
  analogy) which match, and ``IsNullOrUndefined`` which is true for a missing key or ``null``.
* array values: with ``enableAdvancedFilteringOnArrays`` every element is checked (any element matches for
  positive operators, no element may match for NOT operators); without it an array value never matches.
* limits: 25 advanced filters and 25 filter values in total per subscription, 512 characters per string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bridge.filters.base import MISSING, FilterError, index_path, join_path, type_name
from bridge.filters.numbers import Bound, compare_fn, is_number, number_key

__all__ = [
    "FILTER_KEYS",
    "MAX_ADVANCED_FILTERS",
    "MAX_FILTER_VALUES",
    "MAX_STRING_LENGTH",
    "OPERATOR_TYPES",
    "EventGridFilter",
    "compile_subscription_filter",
    "is_eventgrid_filter",
]

Match = Callable[[Any], bool]
Getter = Callable[[Any], Any]

FILTER_KEYS: Final = frozenset(
    {
        "includedEventTypes",
        "subjectBeginsWith",
        "subjectEndsWith",
        "isSubjectCaseSensitive",
        "advancedFilters",
        "enableAdvancedFilteringOnArrays",
    }
)
MAX_ADVANCED_FILTERS: Final = 25
MAX_FILTER_VALUES: Final = 25
MAX_STRING_LENGTH: Final = 512

_NUMBER_SINGLE: Final = {
    "NumberLessThan": "<",
    "NumberGreaterThan": ">",
    "NumberLessThanOrEquals": "<=",
    "NumberGreaterThanOrEquals": ">=",
}
_STRING_OPS: Final = {
    # name: (predicate kind, negated)
    "StringContains": ("contains", False),
    "StringNotContains": ("contains", True),
    "StringBeginsWith": ("begins", False),
    "StringNotBeginsWith": ("begins", True),
    "StringEndsWith": ("ends", False),
    "StringNotEndsWith": ("ends", True),
    "StringIn": ("in", False),
    "StringNotIn": ("in", True),
}
_NUMBER_MULTI: Final = {"NumberIn": False, "NumberNotIn": True}
_RANGE_OPS: Final = {"NumberInRange": False, "NumberNotInRange": True}
_NULL_OPS: Final = frozenset({"IsNullOrUndefined", "IsNotNull"})
OPERATOR_TYPES: Final = frozenset(
    set(_NUMBER_SINGLE) | set(_STRING_OPS) | set(_NUMBER_MULTI) | set(_RANGE_OPS) | _NULL_OPS | {"BoolEquals"}
)
# NOT operators that match when the key is missing (the docs list NumberNotIn and StringNotIn; the
# StringNot* prefix/suffix/contains operators are documented as NOT matching a missing key).
_MATCH_WHEN_MISSING: Final = frozenset({"NumberNotIn", "StringNotIn", "NumberNotInRange"})
_SINGLE_VALUED: Final = frozenset(set(_NUMBER_SINGLE) | {"BoolEquals"})

# Envelope keys of one schema looked up under the other schema's name (first key segment only).
_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "eventtype": ("type",),
    "type": ("eventType",),
    "topic": ("source",),
    "source": ("topic",),
    "eventtime": ("time",),
    "time": ("eventTime",),
    "eventid": ("id",),
}
_FILTER_PROPS: Final = {"operatortype": "operatorType", "key": "key", "value": "value", "values": "values"}


def is_eventgrid_filter(spec: Mapping[str, Any]) -> bool:
    """True when ``spec`` has the shape of an Event Grid filter, bare or wrapped in ``{"filter": {...}}``."""
    if any(key in FILTER_KEYS for key in spec):
        return True
    if len(spec) == 1 and "filter" in spec:
        inner = spec["filter"]
        return isinstance(inner, Mapping) and all(key in FILTER_KEYS for key in inner)
    return False


# ----------------------------------------------------------------------------------------------- key lookup
def _lookup(obj: Any, seg: str, low: str, aliases: tuple[str, ...]) -> Any:
    if type(obj) is not dict and not isinstance(obj, Mapping):
        return MISSING
    value = obj.get(seg, MISSING)
    if value is not MISSING:
        return value
    for name in obj:
        if isinstance(name, str) and name.lower() == low:
            return obj[name]
    for alias in aliases:
        value = obj.get(alias, MISSING)
        if value is not MISSING:
            return value
    return MISSING


def _getter(key: str) -> Getter:
    """Resolve a dotted key (``data.ModelTags.key1``): exact name first, then case-insensitively, then the
    other schema's envelope name for the first segment."""
    segs = key.split(".")
    steps = tuple(
        (seg, seg.lower(), _ALIASES.get(seg.lower(), ()) if i == 0 else ()) for i, seg in enumerate(segs)
    )
    if len(steps) == 1:
        ((seg, low, aliases),) = steps
        return lambda event: _lookup(event, seg, low, aliases)
    if len(steps) == 2:
        (s1, l1, a1), (s2, l2, _a2) = steps

        def get2(event: Any) -> Any:
            first = event.get(s1, MISSING) if type(event) is dict else MISSING
            if first is MISSING:
                first = _lookup(event, s1, l1, a1)
            if type(first) is dict:
                value = first.get(s2, MISSING)
                if value is not MISSING:
                    return value
            return _lookup(first, s2, l2, ())

        return get2

    def get_n(event: Any) -> Any:
        cur = event
        for seg, low, aliases in steps:
            cur = _lookup(cur, seg, low, aliases)
            if cur is MISSING:
                return MISSING
        return cur

    return get_n


# ---------------------------------------------------------------------------------------- operator closures
def _is_array(v: Any) -> bool:
    return isinstance(v, list | tuple)


def _typed(get: Getter, hit: Match, negated: bool, on_missing: bool, arrays: bool) -> Match:
    """The filter closure for an operator that judges values one at a time with ``hit``."""
    if not negated:

        def positive(event: Any) -> bool:
            v = get(event)
            t = type(v)
            if t is list or t is tuple:
                return arrays and any(hit(e) for e in v)
            if v is MISSING:
                return False
            return hit(v)

        return positive

    def negative(event: Any) -> bool:
        v = get(event)
        t = type(v)
        if t is list or t is tuple:
            return arrays and not any(hit(e) for e in v)
        if v is MISSING:
            return on_missing
        return not hit(v)

    return negative


def _as_text(v: Any) -> str | None:
    """The lower-cased text a string operator compares: strings themselves, numbers and booleans through
    their JSON text (the docs filter a numeric CloudEvents extension with StringBeginsWith "5"); None for
    null, objects and arrays, which string operators ignore."""
    if isinstance(v, str):
        return v.lower()
    if v is True:
        return "true"
    if v is False:
        return "false"
    if is_number(v):
        return repr(v) if isinstance(v, float) else str(v)
    return None


def _string_hit(kind: str, values: Sequence[str]) -> Match:
    lowered = tuple(v.lower() for v in values)
    if kind == "in":
        members = frozenset(lowered)

        def is_in(v: Any) -> bool:
            text = v.lower() if type(v) is str else _as_text(v)
            return text is not None and text in members

        return is_in
    if kind == "begins":

        def begins(v: Any) -> bool:
            text = v.lower() if type(v) is str else _as_text(v)
            return text is not None and text.startswith(lowered)

        return begins
    if kind == "ends":

        def ends(v: Any) -> bool:
            text = v.lower() if type(v) is str else _as_text(v)
            return text is not None and text.endswith(lowered)

        return ends

    def contains(v: Any) -> bool:
        text = v.lower() if type(v) is str else _as_text(v)
        return text is not None and any(part in text for part in lowered)

    return contains


def _null_op(op: str, get: Getter, arrays: bool) -> Match:
    if op == "IsNullOrUndefined":

        def is_null(event: Any) -> bool:
            v = get(event)
            return v is None or v is MISSING

        return is_null

    def not_null(event: Any) -> bool:
        v = get(event)
        if v is None or v is MISSING:
            return False
        return arrays or not _is_array(v)

    return not_null


# --------------------------------------------------------------------------------------------- validation
def _number(v: Any, path: str) -> Bound:
    if not is_number(v):
        raise FilterError(path, f"expected a number, got {type_name(v)}")
    return Bound(v)


def _string(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise FilterError(path, f"expected a string, got {type_name(v)}")
    if len(v) > MAX_STRING_LENGTH:
        raise FilterError(path, f"string values are limited to {MAX_STRING_LENGTH} characters, got {len(v)}")
    return v


def _values_list(raw: Mapping[str, Any], op: str, path: str) -> list[Any]:
    if "value" in raw:
        raise FilterError(join_path(path, "value"), f'{op} takes "values" (an array), not "value"')
    if "values" not in raw:
        raise FilterError(path, f'{op} requires "values"')
    values = raw["values"]
    at = join_path(path, "values")
    if not isinstance(values, list | tuple):
        raise FilterError(at, f"expected an array, got {type_name(values)}")
    if not values:
        raise FilterError(at, "at least one value is required")
    return list(values)


def _normalize_filter(item: Any, path: str) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise FilterError(path, f"an advanced filter must be an object, got {type_name(item)}")
    raw: dict[str, Any] = {}
    for name, value in item.items():
        canonical = _FILTER_PROPS.get(str(name).lower())
        if canonical is None:
            raise FilterError(
                join_path(path, str(name)),
                'unknown property (expected "operatorType", "key", "value" or "values")',
            )
        raw[canonical] = value
    return raw


def _compile_advanced(item: Any, path: str, arrays: bool) -> tuple[Match, int]:
    """One advanced filter: its closure and how many filter values it uses."""
    raw = _normalize_filter(item, path)
    op = raw.get("operatorType")
    at_op = join_path(path, "operatorType")
    if op is None:
        raise FilterError(path, 'missing "operatorType"')
    if not isinstance(op, str) or op not in OPERATOR_TYPES:
        hint = ""
        if isinstance(op, str):
            close = [name for name in OPERATOR_TYPES if name.lower() == op.lower()]
            hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise FilterError(at_op, f"unknown operator type {op!r}{hint}")
    key = raw.get("key")
    at_key = join_path(path, "key")
    if key is None:
        raise FilterError(path, 'missing "key"')
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise FilterError(at_key, f"key must be a dotted path such as data.key1, got {key!r}")
    get = _getter(key)

    if op in _NULL_OPS:
        for extra in ("value", "values"):
            if extra in raw:
                raise FilterError(join_path(path, extra), f"{op} takes no value")
        return _null_op(op, get, arrays), 0

    if op in _SINGLE_VALUED:
        if "values" in raw:
            raise FilterError(join_path(path, "values"), f'{op} takes a single "value", not "values"')
        if "value" not in raw:
            raise FilterError(path, f'{op} requires "value"')
        at = join_path(path, "value")
        if op == "BoolEquals":
            wanted = raw["value"]
            if not isinstance(wanted, bool):
                raise FilterError(at, f"expected true or false, got {type_name(wanted)}")
            return _typed(get, lambda v: type(v) is bool and v is wanted, False, False, arrays), 1
        check = compare_fn(_NUMBER_SINGLE[op], _number(raw["value"], at))
        return _typed(get, check, False, False, arrays), 1

    values = _values_list(raw, op, path)
    at_values = join_path(path, "values")
    on_missing = op in _MATCH_WHEN_MISSING
    if op in _STRING_OPS:
        kind, negated = _STRING_OPS[op]
        texts = [_string(v, index_path(at_values, i)) for i, v in enumerate(values)]
        return _typed(get, _string_hit(kind, texts), negated, on_missing, arrays), len(values)
    if op in _NUMBER_MULTI:
        keys = frozenset(number_key(_number(v, index_path(at_values, i)).dec) for i, v in enumerate(values))
        hit: Match = lambda v: is_number(v) and number_key(v) in keys  # noqa: E731
        return _typed(get, hit, _NUMBER_MULTI[op], on_missing, arrays), len(values)
    # NumberInRange / NumberNotInRange: values are [[low, high], ...], inclusive.
    ranges: list[tuple[Match, Match]] = []
    for i, pair in enumerate(values):
        at = index_path(at_values, i)
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise FilterError(at, f"a range must be a [low, high] pair, got {pair!r}")
        low = _number(pair[0], index_path(at, 0))
        high = _number(pair[1], index_path(at, 1))
        if low.dec > high.dec:
            raise FilterError(at, f"range low {low.dec} is greater than high {high.dec}")
        ranges.append((compare_fn(">=", low), compare_fn("<=", high)))
    frozen = tuple(ranges)
    in_range: Match = lambda v: any(lo(v) and hi(v) for lo, hi in frozen)  # noqa: E731
    return _typed(get, in_range, _RANGE_OPS[op], on_missing, arrays), len(values)


def _optional(spec: Mapping[str, Any], name: str, kind: type, path: str) -> Any:
    value = spec.get(name)
    if value is not None and not isinstance(value, kind):
        expected = {bool: "true or false", str: "a string", list: "an array"}.get(kind, kind.__name__)
        raise FilterError(join_path(path, name), f"expected {expected}, got {type_name(value)}")
    return value


# ------------------------------------------------------------------------------------------------ compiling
def _event_type_check(types: Sequence[Any], path: str) -> Match | None:
    names: set[str] = set()
    for i, name in enumerate(types):
        names.add(_string(name, index_path(join_path(path, "includedEventTypes"), i)).lower())
    if not names or "all" in names:
        return None
    wanted = frozenset(names)

    def type_ok(event: Any) -> bool:
        for attr in ("eventType", "type", "origtype"):
            value = event.get(attr)
            if isinstance(value, str) and value.lower() in wanted:
                return True
        return False

    return type_ok


def _subject_check(begins: str | None, ends: str | None, case_sensitive: bool) -> Match | None:
    if not begins and not ends:
        return None
    head = begins or ""
    tail = ends or ""
    if not case_sensitive:
        head, tail = head.lower(), tail.lower()

    def subject_ok(event: Any) -> bool:
        subject = event.get("subject", MISSING)
        if subject is MISSING:
            subject = _lookup(event, "subject", "subject", ())
        if not isinstance(subject, str):
            return False
        if not case_sensitive:
            subject = subject.lower()
        return subject.startswith(head) and subject.endswith(tail)

    return subject_ok


def compile_subscription_filter(spec: Mapping[str, Any], path: str = "") -> Match:
    """Validate an Event Grid filter (bare or ``{"filter": {...}}``) and return the predicate over events."""
    if not isinstance(spec, Mapping):
        raise FilterError(path, "an Event Grid filter must be a JSON object")
    if len(spec) == 1 and "filter" in spec and not any(key in FILTER_KEYS for key in spec):
        path = join_path(path, "filter")
        spec = spec["filter"]
        if not isinstance(spec, Mapping):
            raise FilterError(path, f"expected an object, got {type_name(spec)}")
    for name in spec:
        if name not in FILTER_KEYS:
            raise FilterError(
                join_path(path, str(name)),
                f"unknown Event Grid filter property (expected one of {', '.join(sorted(FILTER_KEYS))})",
            )
    types = _optional(spec, "includedEventTypes", list, path)
    begins = _optional(spec, "subjectBeginsWith", str, path)
    ends = _optional(spec, "subjectEndsWith", str, path)
    case_sensitive = bool(_optional(spec, "isSubjectCaseSensitive", bool, path))
    arrays = bool(_optional(spec, "enableAdvancedFilteringOnArrays", bool, path))
    advanced = _optional(spec, "advancedFilters", list, path) or []

    checks: list[Match] = []
    type_check = _event_type_check(types or [], path)
    if type_check is not None:
        checks.append(type_check)
    subject_check = _subject_check(begins, ends, case_sensitive)
    if subject_check is not None:
        checks.append(subject_check)
    at_adv = join_path(path, "advancedFilters")
    if len(advanced) > MAX_ADVANCED_FILTERS:
        raise FilterError(
            at_adv, f"at most {MAX_ADVANCED_FILTERS} advanced filters are allowed, got {len(advanced)}"
        )
    total = 0
    for i, item in enumerate(advanced):
        check, used = _compile_advanced(item, index_path(at_adv, i), arrays)
        total += used
        if total > MAX_FILTER_VALUES:
            raise FilterError(
                index_path(at_adv, i),
                f"at most {MAX_FILTER_VALUES} filter values are allowed "
                "across all advanced filters of a subscription",
            )
        checks.append(check)

    if not checks:
        return lambda _event: True
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def all_checks(event: Any) -> bool:
        for check in frozen:  # noqa: SIM110 - a plain loop is faster than all(genexpr)
            if not check(event):
                return False
        return True

    return all_checks


class EventGridFilter:
    """A compiled Event Grid subscription filter."""

    __slots__ = ("_match", "spec")

    dialect: str = "eventgrid"

    def __init__(self, spec: Mapping[str, Any], path: str = "") -> None:
        self._match = compile_subscription_filter(spec, path)
        self.spec = spec

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` passes the filter."""
        return self._match(event)

    def __repr__(self) -> str:
        return f"EventGridFilter({dict(self.spec)!r})"
