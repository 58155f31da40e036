"""Amazon EventBridge event patterns, compiled once to closures.

Structure semantics (aws/event-ruler, "rulesForJSONEvent"):

* every field named in the pattern must match (AND); the values listed for a field are alternatives (OR);
* a pattern object steps into the event object of the same name; the pattern ``{}`` matches every event;
* arrays in the event: a leaf matches when ANY element matches; a pattern object applied to an array of
  objects must match within ONE element ("array consistency": fields from different elements never combine);
* ``$or`` (an array of at least two objects) is expanded at compile time into alternatives (disjunctive normal
  form), each evaluated with array consistency, exactly as event-ruler adds one sub-rule per branch;
* ``exists: false`` matches when the field has no scalar value: missing, an object (exists only looks at
  leaves), or an array without scalars; ``exists: true`` matches any scalar value, ``null`` included.

See ``eventbridge_ops`` for the value operators and docs/filters.md for the full rule list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from bridge.filters.base import MISSING, FilterError, index_path, join_path
from bridge.filters.eventbridge_ops import RESERVED_IN_OR, LeafSpec, compile_leaf

__all__ = ["MAX_ALTERNATIVES", "EventBridgeFilter", "compile_pattern"]

Match = Callable[[Any], bool]

OR_KEY: Final = "$or"
# Upper bound on the number of alternatives "$or" may expand to (guards against exponential patterns).
MAX_ALTERNATIVES: Final = 1024

_SCALARS: Final = (str, int, float, bool, type(None))


class _Obj:
    """A parsed pattern object: leaves and child objects by field name, plus its "$or" groups."""

    __slots__ = ("children", "leaves", "ors", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.leaves: dict[str, LeafSpec] = {}
        self.children: dict[str, _Obj] = {}
        self.ors: list[list[_Obj]] = []


class _Flat:
    """One "$or"-free alternative of a pattern object."""

    __slots__ = ("children", "leaves")

    def __init__(self, leaves: dict[str, LeafSpec], children: dict[str, _Flat]) -> None:
        self.leaves = leaves
        self.children = children


# ------------------------------------------------------------------------------------------ parsing
def _parse_object(obj: Mapping[str, Any], path: str, in_or: bool) -> _Obj:
    if not obj:
        raise FilterError(path, "empty objects are not allowed in a pattern")
    node = _Obj(path)
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FilterError(path, f"field names must be strings, got {key!r}")
        at = join_path(path, key)
        if key == OR_KEY:
            node.ors.append(_parse_or(value, at))
            continue
        if in_or and key in RESERVED_IN_OR:
            raise FilterError(at, f'"{key}" is a reserved word and cannot be used as a field name inside $or')
        # EventBridge joins names with dots: {"state.status": [...]} is {"state": {"status": [...]}}.
        parts = key.split(".") if "." in key and "" not in key.split(".") else [key]
        target = node
        for part in parts[:-1]:
            target = target.children.setdefault(part, _Obj(at))
        last = parts[-1]
        if isinstance(value, Mapping):
            parsed = _parse_object(value, at, in_or)
            if last in target.children:
                _merge_obj(target.children[last], parsed)
            else:
                target.children[last] = parsed
        elif isinstance(value, list | tuple):
            leaf = compile_leaf(value, at)
            if last in target.leaves:
                _duplicate(leaf, target.leaves[last])
            target.leaves[last] = leaf
        else:
            shown = "null" if value is None else type(value).__name__
            raise FilterError(
                at,
                f"must be an object or an array, got {shown} (a pattern leaf is an array "
                f"of allowed values, e.g. [{_example(value)}])",
            )
    return node


def _duplicate(leaf: LeafSpec, other: LeafSpec) -> None:
    raise FilterError(
        leaf.path,
        f"the same field is constrained twice (also at {other.path}); a path cannot be allowed "
        "multiple times",
    )


def _merge_obj(into: _Obj, other: _Obj) -> None:
    """Merge a parsed object into another one at the same path (dotted and nested spellings of a field)."""
    for key, leaf in other.leaves.items():
        if key in into.leaves:
            _duplicate(leaf, into.leaves[key])
        into.leaves[key] = leaf
    for key, child in other.children.items():
        if key in into.children:
            _merge_obj(into.children[key], child)
        else:
            into.children[key] = child
    into.ors.extend(other.ors)


def _example(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_or(value: Any, path: str) -> list[_Obj]:
    if not isinstance(value, list | tuple):
        raise FilterError(path, "$or must be followed by an array of objects")
    if len(value) < 2:
        raise FilterError(path, f"$or needs at least 2 objects, got {len(value)}")
    branches: list[_Obj] = []
    for i, branch in enumerate(value):
        at = index_path(path, i)
        if not isinstance(branch, Mapping):
            raise FilterError(at, "only JSON objects are allowed in a $or array")
        branches.append(_parse_object(branch, at, True))
    return branches


# -------------------------------------------------------------------------------- "$or" expansion
def _merge(a: _Flat, b: _Flat) -> _Flat:
    leaves = dict(a.leaves)
    for key, leaf in b.leaves.items():
        if key in leaves:
            _duplicate(leaf, leaves[key])
        leaves[key] = leaf
    children = dict(a.children)
    for key, child in b.children.items():
        children[key] = _merge(children[key], child) if key in children else child
    return _Flat(leaves, children)


def _expand(obj: _Obj) -> list[_Flat]:
    alternatives = [_Flat(dict(obj.leaves), {})]
    for key, child in obj.children.items():
        expanded = _expand(child)
        alternatives = [_merge(alt, _Flat({}, {key: sub})) for alt in alternatives for sub in expanded]
        _check_size(alternatives, obj.path)
    for group in obj.ors:
        options = [flat for branch in group for flat in _expand(branch)]
        alternatives = [_merge(alt, option) for alt in alternatives for option in options]
        _check_size(alternatives, obj.path)
    return alternatives


def _check_size(alternatives: Sequence[_Flat], path: str) -> None:
    if len(alternatives) > MAX_ALTERNATIVES:
        raise FilterError(path, f"pattern too complex: $or expands to over {MAX_ALTERNATIVES} alternatives")


# -------------------------------------------------------------------------------------------------- matching
def _scalars(items: Sequence[Any]) -> Iterator[Any]:
    """The scalar values of an event array, nested arrays flattened, objects skipped. Iterative: an array
    nested a thousand levels deep (valid JSON the normalizer accepts) must not exhaust the Python stack."""
    stack: list[Iterator[Any]] = [iter(items)]
    while stack:
        for item in stack[-1]:
            t = type(item)
            if t is list or t is tuple or (t is not dict and isinstance(item, list | tuple)):
                stack.append(iter(item))
                break
            if t is dict or isinstance(item, Mapping):
                continue
            yield item
        else:
            stack.pop()


def _never(_v: Any) -> bool:
    return False


def _leaf_match(leaf: LeafSpec) -> Match:
    scalar: Match = leaf.scalar or _never
    absent = leaf.exists_false

    def over_array(items: Sequence[Any]) -> bool:
        seen = False
        for item in _scalars(items):
            if scalar(item):
                return True
            seen = True
        return absent and not seen

    def leaf_match(val: Any) -> bool:
        t = type(val)
        if t is str:
            return scalar(val)
        if val is MISSING or t is dict:
            return absent
        if t is list:
            return over_array(val)
        if t in _SCALARS:
            return scalar(val)
        if isinstance(val, Mapping):
            return absent
        if isinstance(val, list | tuple):
            return over_array(val)
        return scalar(val)

    return leaf_match


def _dotted_view(obj: Mapping[str, Any], key: str) -> Any:
    """The event fields spelt ``key.rest`` as an object ``{rest: value}`` (EventBridge joins names with dots,
    so ``{"state.status": 1}`` in an event is ``{"state": {"status": 1}}``); MISSING when there are none."""
    prefix = key + "."
    cut = len(prefix)
    view = {k[cut:]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}
    return view or MISSING


def _node_match(flat: _Flat) -> Match:
    leaves = tuple((key, _leaf_match(leaf)) for key, leaf in flat.leaves.items())
    children = tuple((key, _node_match(child)) for key, child in flat.children.items())
    # What the object decides when the event has no object here (missing, a scalar, an empty array).
    on_nothing = all(fn(MISSING) for _, fn in leaves + children)

    def object_match(val: Mapping[str, Any]) -> bool:
        get = val.get
        for key, fn in leaves:
            if not fn(get(key, MISSING)):
                return False
        for key, fn in children:
            sub = get(key, MISSING)
            if sub is MISSING:
                sub = _dotted_view(val, key)
            if not fn(sub):
                return False
        return True

    def node_match(val: Any) -> bool:
        t = type(val)
        if t is dict or (t is not list and isinstance(val, Mapping)):
            return object_match(val)
        if t is list or isinstance(val, list | tuple):
            if not val:
                return on_nothing
            return _any_element(val, object_match, on_nothing)
        return on_nothing

    return node_match


def _any_element(items: Sequence[Any], object_match: Match, on_nothing: bool) -> bool:
    """Whether some element of an event array matches the object pattern: an object by ``object_match``, a
    scalar or an empty array by ``on_nothing``, a nested array by its own elements. Iterative, so arrays
    nested a thousand levels deep do not exhaust the Python stack."""
    stack: list[Iterator[Any]] = [iter(items)]
    while stack:
        for element in stack[-1]:
            t = type(element)
            if t is dict or (t is not list and isinstance(element, Mapping)):
                if object_match(element):
                    return True
            elif t is list or isinstance(element, list | tuple):
                if element:
                    stack.append(iter(element))
                    break
                if on_nothing:
                    return True
            elif on_nothing:
                return True
        else:
            stack.pop()
    return False


def _match_all(_event: Any) -> bool:
    return True


def compile_pattern(pattern: Mapping[str, Any], path: str = "") -> Match:
    """Validate ``pattern`` and return the predicate over events."""
    if not isinstance(pattern, Mapping):
        raise FilterError(path, "an event pattern must be a JSON object")
    if not pattern:
        return _match_all
    alternatives = [_node_match(flat) for flat in _expand(_parse_object(pattern, path, False))]
    if len(alternatives) == 1:
        return alternatives[0]
    options = tuple(alternatives)
    return lambda event: any(option(event) for option in options)


class EventBridgeFilter:
    """A compiled EventBridge event pattern."""

    __slots__ = ("_match", "spec")

    dialect: str = "eventbridge"

    def __init__(self, pattern: Mapping[str, Any], path: str = "") -> None:
        self._match = compile_pattern(pattern, path)
        self.spec = pattern

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` matches the pattern."""
        return self._match(event)

    def __repr__(self) -> str:
        return f"EventBridgeFilter({dict(self.spec)!r})"
