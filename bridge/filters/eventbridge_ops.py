"""EventBridge leaf matching: one pattern leaf (the array under a field) compiled to a predicate.

A leaf is an OR of matchers. Each matcher judges ONE scalar event value (string, number, bool or null);
``exists`` judges presence. Matching rules (aws/event-ruler, the library EventBridge runs):

* exact values: strings, numbers, ``true``/``false``/``null``; no type coercion (``"5"`` is not ``5``),
  numbers compare by value (``100`` = ``1e2`` = ``100.0``), a string that is an IP literal matches the same
  address in any textual form;
* ``prefix``/``suffix``/``equals-ignore-case``/``wildcard``/``exactly``/``cidr`` only ever match strings,
  ``numeric`` only numbers;
* ``anything-but`` matches every PRESENT scalar value (null, booleans and numbers included) that is not
  excluded; a number exclusion only excludes numbers, a string exclusion only strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from bridge.filters.base import FilterError, index_path, join_path, type_name
from bridge.filters.numbers import Bound, compare_fn, is_number, number_key, to_decimal
from bridge.filters.textmatch import WildcardError, cidr_range, ip_key, wildcard_predicate

__all__ = ["OPERATORS", "LeafSpec", "compile_leaf"]

Pred = Callable[[Any], bool]

OPERATORS: Final = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
        "exactly",
    }
)
# Field names event-ruler refuses inside "$or" branches (Constants.RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP).
RESERVED_IN_OR: Final = OPERATORS | frozenset(
    {
        "=",
        "<",
        "<=",
        ">",
        ">=",
        "regex",
        "not-wildcard",
        "not-equals-ignore-case",
        "date-after",
        "date-on-or-after",
        "date-before",
        "date-on-or-before",
        "in-date-range",
        "ip-address-in-range",
        "ip-address-not-in-range",
    }
)

# EventBridge numeric limits (event-ruler ComparableNumber): bounds in [-5e9, 5e9], at most 6 decimals.
NUMERIC_LIMIT: Final = Decimal("5E9")
NUMERIC_DECIMALS: Final = 6


class LeafSpec:
    """A compiled leaf: ``scalar`` judges one scalar value; ``exists_true``/``exists_false`` say what
    presence/absence alone decide."""

    __slots__ = ("exists_false", "exists_true", "path", "scalar")

    def __init__(self, scalar: Pred | None, exists_true: bool, exists_false: bool, path: str) -> None:
        self.scalar = scalar
        self.exists_true = exists_true
        self.exists_false = exists_false
        self.path = path


def _limited_bound(value: Any, path: str, what: str) -> Bound:
    """A numeric operand checked against EventBridge's limits."""
    if not is_number(value):
        raise FilterError(path, f"value of {what} must be a number, got {type_name(value)}")
    dec = to_decimal(value)
    if abs(dec) > NUMERIC_LIMIT:
        raise FilterError(path, f"{dec} is out of range: numbers must be between -5.0E9 and 5.0E9, inclusive")
    exponent = dec.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -NUMERIC_DECIMALS:
        raise FilterError(path, f"{dec} has more than {NUMERIC_DECIMALS} decimal places")
    return Bound(value)


# ---------------------------------------------------------------------------------------------- exact values
class _Exact:
    """Collects the exact values of one leaf and builds a single predicate for them."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[object] = set()
        self.ips: set[tuple[int, int]] = set()
        self.true = self.false = self.null = False

    def add(self, value: Any, path: str) -> None:
        if value is None:
            self.null = True
        elif value is True:
            self.true = True
        elif value is False:
            self.false = True
        elif isinstance(value, str):
            self.strings.add(value)
            key = ip_key(value)
            if key is not None:
                self.ips.add(key)
        elif is_number(value):
            self.numbers.add(number_key(value))
        else:
            raise FilterError(
                path,
                f"match value must be a string, number, true, false, null or an operator "
                f"object, got {type_name(value)}",
            )

    def empty(self) -> bool:
        return not (self.strings or self.numbers or self.true or self.false or self.null)

    def predicate(self) -> Pred:
        strings = frozenset(self.strings)
        numbers = frozenset(self.numbers)
        ips = frozenset(self.ips)
        want_true, want_false, want_null = self.true, self.false, self.null
        if not (numbers or ips or want_true or want_false or want_null):
            # The common case: only strings.
            return lambda v: isinstance(v, str) and v in strings

        def exact(v: Any) -> bool:
            if isinstance(v, str):
                if v in strings:
                    return True
                if ips:
                    key = ip_key(v)
                    return key is not None and key in ips
                return False
            if v is None:
                return want_null
            if v is True:
                return want_true
            if v is False:
                return want_false
            if numbers and is_number(v):
                return number_key(v) in numbers
            return False

        return exact


# ------------------------------------------------------------------------------------------- string operators
def _string_operand(value: Any, path: str, op: str) -> str:
    if not isinstance(value, str):
        raise FilterError(path, f"{op} match pattern must be a string, got {type_name(value)}")
    return value


def _single_key(obj: Mapping[str, Any], path: str, what: str) -> tuple[str, Any]:
    if len(obj) == 0:
        raise FilterError(path, f"{what} expression name not found (empty object)")
    if len(obj) > 1:
        keys = ", ".join(f'"{k}"' for k in obj)
        raise FilterError(path, f"only one key allowed in {what} expression, got {keys}")
    ((key, value),) = obj.items()
    if not isinstance(key, str):
        raise FilterError(path, f"{what} expression name must be a string")
    return key, value


def _prefix_or_suffix(op: str, operand: Any, path: str) -> Pred:
    at = join_path(path, op)
    if isinstance(operand, Mapping):
        inner, text = _single_key(operand, at, op)
        if inner != "equals-ignore-case":
            raise FilterError(at, f'unsupported {op} pattern "{inner}" (only equals-ignore-case nests)')
        low = _string_operand(text, join_path(at, inner), "equals-ignore-case").lower()
        if op == "prefix":
            return lambda v: isinstance(v, str) and v.lower().startswith(low)
        return lambda v: isinstance(v, str) and v.lower().endswith(low)
    text = _string_operand(operand, at, op)
    if op == "prefix":
        return lambda v: isinstance(v, str) and v.startswith(text)
    return lambda v: isinstance(v, str) and v.endswith(text)


def _wildcard(text: str, path: str) -> Callable[[str], bool]:
    try:
        return wildcard_predicate(text)
    except WildcardError as exc:
        raise FilterError(path, f"invalid wildcard {text!r}: {exc}") from None


def _on_strings(pred: Callable[[str], bool]) -> Pred:
    return lambda v: isinstance(v, str) and pred(v)


def _cidr(operand: Any, path: str) -> Pred:
    text = _string_operand(operand, path, "cidr")
    try:
        version, low, high = cidr_range(text)
    except ValueError as exc:
        raise FilterError(path, f"invalid cidr {text!r}: {exc}") from None

    def in_block(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        key = ip_key(v)
        return key is not None and key[0] == version and low <= key[1] <= high

    return in_block


# ---------------------------------------------------------------------------------------------------- numeric
_LOWER_OPS: Final = frozenset({">", ">="})
_UPPER_OPS: Final = frozenset({"<", "<="})


def _numeric(operand: Any, path: str) -> Pred:
    if not isinstance(operand, list | tuple):
        raise FilterError(path, f"value of numeric must be an array, got {type_name(operand)}")
    items = list(operand)
    if not items:
        raise FilterError(path, "numeric expression is empty")
    first = items[0]
    if not isinstance(first, str):
        raise FilterError(index_path(path, 0), f"invalid numeric member {first!r} (expected an operator)")
    if first not in _LOWER_OPS and first not in _UPPER_OPS and first != "=":
        raise FilterError(index_path(path, 0), f'unrecognized numeric operator "{first}"')
    if len(items) < 2:
        raise FilterError(path, f"value of {first} must be numeric (missing operand)")
    bound = _limited_bound(items[1], index_path(path, 1), first)
    if first == "=" or first in _UPPER_OPS:
        if len(items) > 2:
            raise FilterError(path, f"too many elements in numeric expression (nothing may follow {first} x)")
        return compare_fn(first, bound)
    # ">" / ">=" optionally followed by "<" / "<=".
    if len(items) == 2:
        return compare_fn(first, bound)
    second = items[2]
    if not isinstance(second, str):
        raise FilterError(index_path(path, 2), f"bad value in numeric range: {second!r} (expected < or <=)")
    if second not in _UPPER_OPS:
        raise FilterError(index_path(path, 2), f'bad numeric range operator "{second}" (expected < or <=)')
    if len(items) < 4:
        raise FilterError(path, f"value of {second} must be numeric (missing operand)")
    if len(items) > 4:
        raise FilterError(path, "too many terms in numeric range expression")
    top = _limited_bound(items[3], index_path(path, 3), second)
    if not bound.dec < top.dec:
        raise FilterError(path, f"bottom must be less than top ({bound.dec} >= {top.dec})")
    low = compare_fn(first, bound)
    high = compare_fn(second, top)
    return lambda v: low(v) and high(v)


# ----------------------------------------------------------------------------------------------- anything-but
_ANYTHING_BUT_NESTED: Final = ("prefix", "suffix", "equals-ignore-case", "wildcard")


def _anything_but(operand: Any, path: str) -> Pred:
    """The predicate "value is present and not excluded"."""
    if isinstance(operand, Mapping):
        inner, value = _single_key(operand, path, "anything-but")
        at = join_path(path, inner)
        if inner not in _ANYTHING_BUT_NESTED:
            raise FilterError(
                at, f'unsupported anything-but pattern "{inner}" (allowed: {", ".join(_ANYTHING_BUT_NESTED)})'
            )
        texts: list[str]
        if isinstance(value, list | tuple):
            if not value:
                raise FilterError(at, f"anything-but {inner} list must not be empty")
            texts = [_string_operand(t, index_path(at, i), inner) for i, t in enumerate(value)]
        else:
            texts = [_string_operand(value, at, inner)]
        if inner in ("prefix", "suffix") and any(t == "" for t in texts):
            raise FilterError(at, f"empty {inner} not allowed in anything-but")
        if inner == "prefix":
            prefixes = tuple(texts)
            return lambda v: not (isinstance(v, str) and v.startswith(prefixes))
        if inner == "suffix":
            suffixes = tuple(texts)
            return lambda v: not (isinstance(v, str) and v.endswith(suffixes))
        if inner == "equals-ignore-case":
            lowered = frozenset(t.lower() for t in texts)
            return lambda v: not (isinstance(v, str) and v.lower() in lowered)
        preds = [_wildcard(t, at) for t in texts]
        return lambda v: not (isinstance(v, str) and any(p(v) for p in preds))
    if isinstance(operand, list | tuple):
        values = list(operand)
        for i, v in enumerate(values):
            if v is None or isinstance(v, bool | Mapping | list | tuple):
                raise FilterError(
                    index_path(path, i),
                    f"inside an anything-but list, only strings or numbers are allowed, got {type_name(v)}",
                )
        has_str = any(isinstance(v, str) for v in values)
        has_num = any(not isinstance(v, str) for v in values)
        if not values or (has_str and has_num):
            raise FilterError(
                path,
                "inside an anything-but list, all values must be strings or all numbers "
                "(mixed or empty lists are not supported)",
            )
    elif isinstance(operand, str) or is_number(operand):
        values = [operand]
        has_str = isinstance(operand, str)
    else:
        raise FilterError(
            path,
            "value of anything-but must be an array, a single string/number value or an "
            f"object, got {type_name(operand)}",
        )
    if has_str:
        excluded = frozenset(values)
        return lambda v: not (isinstance(v, str) and v in excluded)
    listed = isinstance(operand, list | tuple)
    keys = frozenset(
        number_key(_limited_bound(v, index_path(path, i) if listed else path, "anything-but").dec)
        for i, v in enumerate(values)
    )
    return lambda v: not (is_number(v) and number_key(v) in keys)


# ------------------------------------------------------------------------------------------------------- leaf
def _operator(obj: Mapping[str, Any], path: str, exact: _Exact, preds: list[Pred]) -> bool | None:
    """Compile one operator object; returns True/False for ``exists``, None otherwise."""
    op, operand = _single_key(obj, path, "match")
    at = join_path(path, op)
    if op not in OPERATORS:
        raise FilterError(path, f'unknown operator "{op}"')
    if op == "exists":
        if not isinstance(operand, bool):
            raise FilterError(at, f"exists match pattern must be true or false, got {type_name(operand)}")
        return operand
    if op == "exactly":
        exact.strings.add(_string_operand(operand, at, op))
    elif op in ("prefix", "suffix"):
        preds.append(_prefix_or_suffix(op, operand, path))
    elif op == "equals-ignore-case":
        low = _string_operand(operand, at, op).lower()
        preds.append(lambda v: isinstance(v, str) and v.lower() == low)
    elif op == "wildcard":
        preds.append(_on_strings(_wildcard(_string_operand(operand, at, op), at)))
    elif op == "numeric":
        preds.append(_numeric(operand, at))
    elif op == "cidr":
        preds.append(_cidr(operand, at))
    else:  # anything-but
        preds.append(_anything_but(operand, at))
    return None


def compile_leaf(values: Sequence[Any], path: str) -> LeafSpec:
    """Compile the array under a pattern field."""
    if not values:
        raise FilterError(path, "empty arrays are not allowed (a pattern leaf needs at least one value)")
    exact = _Exact()
    preds: list[Pred] = []
    exists_true = exists_false = False
    for i, item in enumerate(values):
        at = index_path(path, i)
        if isinstance(item, Mapping):
            flag = _operator(item, at, exact, preds)
            if flag is True:
                exists_true = True
            elif flag is False:
                exists_false = True
        elif isinstance(item, list | tuple):
            raise FilterError(
                at, "match value must be a string, number, true, false, null or an operator object, got array"
            )
        else:
            exact.add(item, at)
    if not exact.empty():
        preds.insert(0, exact.predicate())
    scalar: Pred | None
    if exists_true:
        scalar = _always
    elif not preds:
        scalar = None
    elif len(preds) == 1:
        scalar = preds[0]
    else:
        alternatives = tuple(preds)
        scalar = lambda v: any(p(v) for p in alternatives)  # noqa: E731
    return LeafSpec(scalar, exists_true, exists_false, path)


def _always(_v: Any) -> bool:
    return True
