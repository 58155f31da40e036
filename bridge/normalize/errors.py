"""The one exception the normalizer raises: ``NormalizeError`` with a precise, human-readable ``reason``."""

from __future__ import annotations

from typing import Any


class NormalizeError(Exception):
    """A message (or one element of an array message) that cannot become a canonical event.

    ``reason`` is the precise cause, e.g. ``"missing required field 'id'"``; it is what the dead-letter
    record carries. ``index`` is the 0-based position of the failing element when the message was a JSON
    array (``None`` otherwise) and ``element`` the failing element itself (``None`` when the whole message
    failed), so a caller can dead-letter just that element.
    """

    def __init__(self, reason: str, *, index: int | None = None, element: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.index = index
        self.element = element

    def at(self, index: int, element: Any) -> NormalizeError:
        """A copy of this error located at array element ``index`` (the reason names the element)."""
        return NormalizeError(f"{self.reason} (JSON array element {index})", index=index, element=element)

    def __repr__(self) -> str:
        return f"NormalizeError({self.reason!r}, index={self.index!r})"
