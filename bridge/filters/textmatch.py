"""String helpers for the EventBridge dialect: wildcard patterns and IP addresses / CIDR blocks.

Semantics follow aws/event-ruler (the matching library behind EventBridge):

* wildcard: ``*`` matches any run of characters (including none), the whole value must match, ``\\*`` is a
  literal asterisk, ``\\\\`` a literal backslash; a backslash before anything else and two consecutive
  wildcards (``**``) are invalid.
* IP literals: a string that looks like an IPv4 (``d.d.d.d``) or IPv6 (hex digits and colons) address is an
  address; CIDR ``a/n`` covers the network of ``a``: its host bits cleared up to them all set, so
  ``10.0.0.7/24`` means ``10.0.0.0/24`` (event-ruler floors the range since aws/event-ruler#89). IPv4 masks
  must be 0..31 and IPv6 masks 0..127, as in event-ruler.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

__all__ = [
    "WildcardError",
    "cidr_range",
    "ip_key",
    "wildcard_predicate",
]

_IPV4: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6: Final = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")


class WildcardError(ValueError):
    """An invalid wildcard pattern."""


def _wildcard_parts(pattern: str) -> list[str]:
    """Split a wildcard pattern into unescaped literal segments; segments are separated by ``*``."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                raise WildcardError(f"consecutive wildcard characters at position {i}")
            parts.append("".join(cur))
            cur = []
        elif c == "\\":
            if i + 1 < n and pattern[i + 1] in "*\\":
                cur.append(pattern[i + 1])
                i += 1
            else:
                raise WildcardError(f"invalid escape character at position {i} (only \\* and \\\\ allowed)")
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def wildcard_predicate(pattern: str) -> Callable[[str], bool]:
    """A predicate on strings for the wildcard ``pattern``; raises ``WildcardError`` when it is invalid.

    No regular expression, no backtracking: the first segment must be a prefix, the last a suffix, and the
    middle ones are found left to right (leftmost match first), which is exact for ``*``-only patterns."""
    parts = _wildcard_parts(pattern)
    if len(parts) == 1:
        literal = parts[0]
        return literal.__eq__
    head, tail = parts[0], parts[-1]
    middles = tuple(p for p in parts[1:-1] if p)
    need = sum(len(p) for p in parts)
    if not middles:
        if not tail:
            return lambda s: s.startswith(head)
        if not head:
            return lambda s: s.endswith(tail)
        return lambda s: len(s) >= need and s.startswith(head) and s.endswith(tail)
    if not head and not tail and len(middles) == 1:
        middle = middles[0]
        return lambda s: middle in s
    head_len, tail_len = len(head), len(tail)

    def match(s: str) -> bool:
        if len(s) < need or not s.startswith(head) or not s.endswith(tail):
            return False
        pos = head_len
        stop = len(s) - tail_len
        for segment in middles:
            found = s.find(segment, pos, stop)
            if found < 0:
                return False
            pos = found + len(segment)
        return True

    return match


def looks_like_ip(text: str) -> bool:
    """The event-ruler test for "this string is an IP address literal" (before parsing)."""
    return _IPV4.fullmatch(text) is not None or _IPV6.fullmatch(text) is not None


def ip_key(text: str) -> tuple[int, int] | None:
    """``(version, integer)`` of an IP literal, or None when ``text`` is not one."""
    if not looks_like_ip(text):
        return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (addr.version, int(addr))


def cidr_range(text: str) -> tuple[int, int, int]:
    """``(version, low, high)`` covered by the CIDR ``text``; raises ValueError with a readable reason."""
    pieces = text.split("/")
    if len(pieces) != 2:
        raise ValueError("malformed CIDR, one '/' required")
    address, bits_text = pieces
    try:
        bits = int(bits_text)
    except ValueError:
        raise ValueError("malformed CIDR, mask bits must be an integer") from None
    if bits < 0:
        raise ValueError("malformed CIDR, mask bits must not be negative")
    key = ip_key(address)
    if key is None:
        raise ValueError(f"invalid IP address: {address!r}")
    version, low = key
    width = 32 if version == 4 else 128
    if bits > width - 1:
        raise ValueError(f"IPv{version} mask bits must be < {width}")
    host = (1 << (width - bits)) - 1
    network = low & ~host  # host bits of the operand are cleared: 10.0.0.7/24 is 10.0.0.0/24
    return (version, network, network | host)
