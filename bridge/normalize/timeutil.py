"""Timestamps: one fixed output format, fast paths for the shapes the clouds actually send.

Output format (the canonical ``time`` attribute and the time part of ``sequence``) is always
``YYYY-MM-DDTHH:MM:SS.ffffffZ``: UTC, exactly six fractional digits (27 characters), so equal-width strings
compare in time order. Finer input precision (Event Grid sends seven digits) is truncated, never rounded.

Accepted inputs: RFC 3339 / ISO 8601 strings (``Z``, ``z``, offsets such as ``+02:00``; a string without a
zone is taken as UTC), epoch numbers, and epoch numbers written as digit strings (EventBridge sometimes sends
``"time": "1583831889050"``). Epoch values with an absolute value of at least 1e11 are milliseconds
(1e11 ms is 1973-03-03), smaller ones are seconds. Leap seconds (``:60``) are rejected.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

_UTC: Final = UTC
_EPOCH: Final = datetime(1970, 1, 1)
_ONE_US: Final = timedelta(microseconds=1)
MILLIS_THRESHOLD: Final = 10**11
_CACHE_MAX: Final = 8192
_MAX_EPOCH_DIGITS: Final = 20
CACHE: dict[str, str] = {}  # raw string -> canonical time (bounded: cleared when full)


def format_micros(us: int) -> str | None:
    """Microseconds since the Unix epoch as the canonical time string (``None`` when out of range)."""
    try:
        return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds") + "Z"
    except OverflowError:
        return None


def micros_of(canonical: str) -> int:
    """Microseconds since the Unix epoch of a canonical time string (as made by ``normalize_time``)."""
    return (datetime.fromisoformat(canonical[:26]) - _EPOCH) // _ONE_US


def epoch_to_micros(value: float) -> int | None:
    """An epoch number (seconds, or milliseconds from 1e11 on) as microseconds; ``None`` if not finite."""
    if isinstance(value, float):
        us = value * 1000 if abs(value) >= MILLIS_THRESHOLD else value * 1_000_000
        if not math.isfinite(us):  # NaN, infinity, or a finite value whose microseconds overflow (1e308)
            return None
        return round(us)
    if abs(value) >= MILLIS_THRESHOLD:
        return int(value) * 1000
    return int(value) * 1_000_000


def _from_datetime(d: datetime) -> str:
    if d.tzinfo is not None:
        d = d.astimezone(_UTC).replace(tzinfo=None)
    return d.isoformat(timespec="microseconds") + "Z"


def _parse_str(s: str) -> str | None:
    n = len(s)
    # Fast path: "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.<digits>Z", by position, no datetime math.
    if (
        n >= 20
        and s[n - 1] == "Z"
        and s[10] == "T"
        and s[4] == "-"
        and s[7] == "-"
        and s[13] == ":"
        and s[16] == ":"
    ):
        frac: str | None = None
        if n == 20:
            frac = ""
        elif s[19] == "." and n > 21:
            frac = s[20 : n - 1]
            if not (frac.isascii() and frac.isdigit()):
                frac = None
        if frac is not None:
            head = s[:19]
            try:
                datetime.fromisoformat(head)  # validates every field (month 13, Feb 30, ...)
            except ValueError:
                return None
            return head + "." + (frac + "000000")[:6] + "Z"
    if s.isascii() and s.isdigit():
        if len(s) > _MAX_EPOCH_DIGITS:  # past year 9999 in any unit (and int() refuses over 4300 digits)
            return None
        us = epoch_to_micros(int(s))
        return None if us is None else format_micros(us)
    try:
        d = datetime.fromisoformat(s)
    except ValueError:
        try:
            d = datetime.fromisoformat(s.upper())  # RFC 3339 allows lower-case "t" and "z"
        except ValueError:
            return None
    return _from_datetime(d)


def normalize_time(value: object) -> str | None:
    """The canonical time string for a timestamp value, or ``None`` when it is not a valid timestamp."""
    if type(value) is str:
        hit = CACHE.get(value)
        if hit is not None:
            return hit
        out = _parse_str(value)
        if out is not None:
            if len(CACHE) >= _CACHE_MAX:
                CACHE.clear()
            CACHE[value] = out
        return out
    if isinstance(value, int | float) and not isinstance(value, bool):
        us = epoch_to_micros(value)
        return None if us is None else format_micros(us)
    return None


def parse_instant(value: object) -> int | None:
    """Microseconds since the Unix epoch for any accepted timestamp value (``None`` if not one)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_to_micros(value)
    canonical = normalize_time(value)
    return None if canonical is None else micros_of(canonical)
