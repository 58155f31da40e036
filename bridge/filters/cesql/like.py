"""The LIKE operator's pattern (spec section 3.4.3), compiled once to a matcher that never backtracks.

``%`` is any run of characters (none included), ``_`` exactly one character, ``\\%`` and ``\\_`` are the
characters themselves, and everything else (a backslash before any other character too) matches itself, case
sensitively. The pattern is split at its ``%`` into segments; the first is anchored at the start, the last at the
end and the middle ones are found left to right, each at its leftmost place, which is enough for ``%`` (the
leftmost place leaves the most room to what follows). Matching costs at most one scan of the text per segment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["compile_like"]

_ANY: Final = None  # "_" in a segment

Segment = list[str | None]
Matcher = Callable[[str], bool]


def _segments(pattern: str) -> list[Segment]:
    segments: list[Segment] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n and pattern[i + 1] in "%_":
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if char == "%":
            segments.append([])
        else:
            segments[-1].append(_ANY if char == "_" else char)
        i += 1
    return segments


class _Piece:
    """One segment: plain text (``str`` methods) or text with ``_`` (a regular expression of literals and ``.``)."""

    __slots__ = ("length", "regex", "text")

    def __init__(self, segment: Segment) -> None:
        self.length = len(segment)
        if _ANY in segment:
            self.text: str | None = None
            self.regex: re.Pattern[str] | None = re.compile(
                "".join("." if c is _ANY else re.escape(c) for c in segment), re.DOTALL
            )
        else:
            self.text = "".join(c for c in segment if c is not None)
            self.regex = None

    def at(self, value: str, pos: int) -> bool:
        """Does the piece match ``value`` at ``pos``?"""
        if self.text is not None:
            return value.startswith(self.text, pos)
        assert self.regex is not None
        return self.regex.match(value, pos) is not None

    def find(self, value: str, start: int, end: int) -> int:
        """Leftmost place of the piece within ``value[start:end]``, or -1."""
        if self.text is not None:
            return value.find(self.text, start, end)
        assert self.regex is not None
        m = self.regex.search(value, start, end)
        return -1 if m is None else m.start()


def compile_like(pattern: str) -> Matcher:
    """A predicate telling whether a string matches the LIKE ``pattern``."""
    segments = _segments(pattern)
    if len(segments) == 1:
        piece = _Piece(segments[0])
        if piece.text is not None:
            text = piece.text
            return lambda value: value == text
        return lambda value: len(value) == piece.length and piece.at(value, 0)
    first, last = _Piece(segments[0]), _Piece(segments[-1])
    middle = [_Piece(s) for s in segments[1:-1] if s]
    if not middle and first.text is not None and last.text is not None:
        prefix, suffix, least = first.text, last.text, first.length + last.length
        if not suffix:
            return lambda value: value.startswith(prefix)
        if not prefix:
            return lambda value: value.endswith(suffix)
        return lambda value: len(value) >= least and value.startswith(prefix) and value.endswith(suffix)
    if not first.length and not last.length and len(middle) == 1 and middle[0].text is not None:
        inner = middle[0].text
        return lambda value: inner in value
    least = first.length + last.length + sum(p.length for p in middle)

    def match(value: str) -> bool:
        end = len(value) - last.length
        if len(value) < least or not first.at(value, 0) or not last.at(value, end):
            return False
        pos = first.length
        for piece in middle:
            found = piece.find(value, pos, end)
            if found < 0:
                return False
            pos = found + piece.length
        return True

    return match
