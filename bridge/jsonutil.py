"""JSON in and out without losing what the producer wrote: orjson fast, exact where orjson cannot be.

orjson holds integers in 64 bits: on input a larger integer literal becomes a float (or, beyond ~1e308, a parse
error) and on output a larger ``int`` is a ``TypeError``; it also refuses to write data nested deeper than 255
levels, which it reads (up to 1024). The bridge promises ``data`` untouched, so:

- ``loads``: orjson, unless the text holds a run of 19 or more digits (a translate and a find at C speed; no 64-bit
  integer needs more than 20 and every shorter literal fits), in which case the standard library parses it
  with exact ``int``s. orjson still validates it first where it can, so both paths accept and reject the same
  documents (invalid UTF-8, lone surrogates, ``NaN``, nesting beyond 1024). An integer literal longer than
  ``MAX_INT_DIGITS`` digits is rejected (Python refuses to convert such a number to text).
- ``dumps``: orjson, and the standard library (compact, UTF-8, exact integers) for what orjson refuses.

Both raise ``JSONDecodeError`` (``json.JSONDecodeError``; orjson's is a subclass) and ``TypeError``/
``ValueError`` like their orjson counterparts.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Final

import orjson

JSONDecodeError = json.JSONDecodeError
MAX_INT_DIGITS: Final = 4300  # sys.int_info.default_max_str_digits: int <-> str beyond this raises
MAX_DEPTH: Final = 1024  # orjson's parser limit; the fallbacks honour it too
_DIGITS_AS_ZERO: Final = bytes(48 if 48 <= c <= 57 else 120 for c in range(256))  # digit -> "0", else "x"
_LONG_RUN: Final = b"0" * 19
_NUMBER_TOO_BIG: Final = "number is infinity when parsed as double"


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _exact_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"integer literal of {digits} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e309: orjson rejects it, so does this path
        raise ValueError(f"number {text[:40]} is infinity when parsed as double")
    return value


_DECODER: Final = json.JSONDecoder(parse_int=_exact_int, parse_float=_finite_float, parse_constant=_constant)


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", errors="surrogatepass")
    return bytes(data)


def _exact_loads(raw: bytes) -> Any:
    try:
        orjson.loads(raw)  # the same acceptance rules as the fast path
        checked = True
    except orjson.JSONDecodeError as exc:
        if _NUMBER_TOO_BIG not in exc.msg:
            raise
        checked = False  # orjson stopped at a huge number: what follows it is checked below
    limit = sys.getrecursionlimit()
    text = ""
    try:
        text = raw.decode("utf-8")
        sys.setrecursionlimit(max(limit, MAX_DEPTH * 2 + 200))
        value = _DECODER.decode(text)
        if not checked:
            _check_like_orjson(value)
        return value
    except JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JSONDecodeError(str(exc), text, 0) from None
    finally:
        sys.setrecursionlimit(limit)


def _check_like_orjson(value: Any) -> None:
    """Reject what orjson would have rejected after the number it stopped at: lone surrogates (strings that
    are not valid Unicode text) and nesting deeper than ``MAX_DEPTH``. Iterative."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii():
                node.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nesting deeper than {MAX_DEPTH} levels")
            if isinstance(node, dict):
                stack.extend((k, depth) for k in node)
                stack.extend((v, depth + 1) for v in node.values())
            else:
                stack.extend((v, depth + 1) for v in node)


def nesting(value: Any) -> int:
    """How deep ``value`` nests: 0 for a scalar, 1 for a flat object or array. Iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list | tuple):
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((v, depth) for v in node)
    return deepest


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; integers of any size (up to ``MAX_INT_DIGITS`` digits) come out exact."""
    raw = _as_bytes(data)
    # a run of 19 digits, found with two C-speed passes (a regular expression took 40 us per KiB: a quarter of
    # the bridge's time per event)
    if raw.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) == -1:
        return orjson.loads(raw)
    return _exact_loads(raw)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; integers beyond 64 bits and deep nesting are written exactly, not refused."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        if not isinstance(exc, orjson.JSONEncodeError):
            raise
        reason = str(exc)
    if "exceeds 64-bit" not in reason and "Recursion limit" not in reason:
        raise orjson.JSONEncodeError(reason)
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, MAX_DEPTH * 2 + 200))
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    finally:
        sys.setrecursionlimit(limit)
