"""Tokens of a CESQL expression (spec section 2; the CESQLLexer.g4 grammar of the spec repository).

Whitespace is space, tab, CR and LF. A *word* is a run of letters, digits and ``_``: the parser tells keywords
(case-insensitive), integers (digits only), identifiers and function names apart. String literals are quoted with
``'`` or ``"``; a backslash escapes the next character while scanning, and in the value ``\\'`` (in ``'...'``)
or ``\\"`` (in ``"..."``) stands for the quote, every other backslash pair is kept as written (so the LIKE
escapes ``\\%`` and ``\\_`` reach the pattern). The scanner is one regular expression without nested quantifiers:
linear in the length of the input, whatever it holds.
"""

from __future__ import annotations

import re
from typing import Final

from bridge.filters.cesql.errors import CesqlParseError

__all__ = ["Token", "tokenize"]

INT: Final = "int"
STR: Final = "str"
WORD: Final = "word"
OP: Final = "op"
LPAREN: Final = "("
RPAREN: Final = ")"
COMMA: Final = ","
EOF: Final = "eof"

_SCAN: Final = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      |(?P<word>[A-Za-z0-9_]+)
      |(?P<sq>'[^'\\]*(?:\\.[^'\\]*)*')
      |(?P<dq>"[^"\\]*(?:\\.[^"\\]*)*")
      |(?P<op><>|!=|<=|>=|[=<>+\-*/%])
      |(?P<punct>[(),])""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


class Token:
    """One token: its kind, its text as written (a string literal's decoded value) and its 0-based offset."""

    __slots__ = ("kind", "pos", "text")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind = kind
        self.text = text
        self.pos = pos

    def __repr__(self) -> str:
        return f"Token({self.kind}, {self.text!r}, {self.pos})"

    def describe(self) -> str:
        """The token as an error message names it."""
        if self.kind == EOF:
            return "the end of the expression"
        if self.kind == STR:
            return "a string literal"
        text = self.text if len(self.text) <= 30 else self.text[:27] + "..."
        return f"'{text}'"


def _unquote(literal: str) -> str:
    quote, body = literal[0], literal[1:-1]
    if "\\" not in body:
        return body
    return _ESCAPE.sub(lambda m: quote if m.group(1) == quote else m.group(0), body)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``eof`` token; raises ``CesqlParseError`` on a character that starts
    no token and on an unterminated string literal."""
    tokens: list[Token] = []
    pos, end = 0, len(text)
    scan = _SCAN.match
    while pos < end:
        m = scan(text, pos)
        if m is None:
            char = text[pos]
            if char in "'\"":
                raise CesqlParseError(pos + 1, f"unterminated string literal (no closing {char})")
            if char == "!":
                raise CesqlParseError(pos + 1, "'!' must be followed by '=' (the operator is !=)")
            raise CesqlParseError(pos + 1, f"unexpected character {char!r}")
        group = m.lastgroup
        value = m.group()
        if group == "word":
            tokens.append(Token(INT if value.isdigit() and value.isascii() else WORD, value, pos))
        elif group == "sq" or group == "dq":
            tokens.append(Token(STR, _unquote(value), pos))
        elif group == "op":
            tokens.append(Token(OP, value, pos))
        elif group == "punct":
            tokens.append(Token(value, value, pos))
        pos = m.end()
    tokens.append(Token(EOF, "", end))
    return tokens
