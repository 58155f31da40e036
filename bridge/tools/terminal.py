"""What the command-line tools share: time arguments, ages, and a progress line shown only on a terminal.

``parse_when`` reads ``--since``/``--until``: a duration back from now (``90s``, ``30m``, ``2h``, ``7d``,
``1w``) or a time (RFC 3339, or any timestamp the normalizer accepts). ``Progress`` rewrites one line on
stderr (``\\r``) at most ten times a second when stderr is a terminal, and writes nothing otherwise, so
pipes and logs stay clean.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, Final

from bridge.normalize.timeutil import parse_instant

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(ValueError):
    """A command-line argument that cannot be used (the message says why)."""


def parse_when(text: str, now: float | None = None) -> float:
    """Seconds since the epoch for ``--since``/``--until`` (see the module docstring)."""
    now = time.time() if now is None else now
    m = _DURATION.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    us = parse_instant(text.strip())
    if us is None:
        raise UsageError(f"{text!r} is neither a duration (30m, 2h, 7d) nor a time (2026-01-01T12:00:00Z)")
    return us / 1e6


def event_epoch(value: str | None) -> float | None:
    """Seconds since the epoch of an event's ``time`` (None when absent or not a time)."""
    if not value:
        return None
    us = parse_instant(value)
    return None if us is None else us / 1e6


def age(seconds: float) -> str:
    """A short age: ``42s``, ``17m``, ``5h``, ``3d``; ``-`` for none; ``+..`` for a time in the future."""
    if seconds != seconds:  # NaN: unknown
        return "-"
    sign = "+" if seconds < 0 else ""
    s = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{sign}{int(s // size)}{unit}"
    return f"{sign}{int(s)}s"


class Progress:
    """A progress line on a terminal (see the module docstring)."""

    def __init__(self, what: str, stream: IO[str] | None = None, *, force: bool = False, bar: bool = False) -> None:
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.bar = bar
        self._last = 0.0
        self._shown = False

    def update(self, done: int, total: int | None, extra: str = "", *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        if total:
            frac = min(1.0, done / total)
            head = f"[{'#' * int(frac * 30):<30}] " if self.bar else ""
            text = f"{head}{self.what}: {done:,}/{total:,} ({frac:.0%})"
        else:
            text = f"{self.what}: {done:,}"
        if extra:
            text += f"  {extra}"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """Erase the line (the command's own output follows on a clean line)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
