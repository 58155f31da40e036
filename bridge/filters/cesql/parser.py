"""CESQL v1 parser: text to a syntax tree (``bridge.filters.cesql.nodes``), or a ``CesqlParseError`` with the
1-based position of the mistake.

Precedence, tightest first (spec section 3.6): function invocations; the prefix operators ``NOT`` and ``-``;
``LIKE``, ``EXISTS``, ``IN``; then the binary tiers ``* / %``, ``+ -``, the comparisons, and ``AND OR XOR``
(one tier). Operators of one tier group left to right ("MUST be evaluated left to right when the precedence is
equal"), so ``a OR b AND c`` is ``(a OR b) AND c`` and ``NOT a = b`` is ``(NOT a) = b``; docs/filters.md says
to write parentheses. A ``-`` (or ``+``) right before an integer is the sign of the literal
(``integer-literal ::= ('+'|'-')? digit+``), which is how ``-2147483648`` is a valid literal.

No input can make the parser recurse without bound: prefix operators and binary operators are read in loops
(binary operators with an explicit stack of open chains), and only parentheses, function arguments and IN lists
recurse, at most ``MAX_NESTING`` levels deep. Trees deeper than ``MAX_DEPTH`` are refused too, so compiling and
evaluating stay far from Python's recursion limit. Both limits give a parse error.
"""

from __future__ import annotations

import re
from typing import Final

from bridge.filters.cesql.errors import CesqlParseError
from bridge.filters.cesql.lexer import COMMA, EOF, INT, LPAREN, OP, RPAREN, STR, WORD, Token, tokenize
from bridge.filters.cesql.nodes import LEVELS, Attribute, Call, Chain, Exists, In, Like, Literal, Node, Unary
from bridge.filters.cesql.values import INT_MAX, INT_MIN

__all__ = ["MAX_DEPTH", "MAX_NESTING", "parse"]

MAX_DEPTH: Final = 100
"""Deepest syntax tree accepted (a leaf is 1; ``NOT NOT x`` is 3)."""
MAX_NESTING: Final = 100
"""Most parentheses, function argument lists and IN lists open at once."""

KEYWORDS: Final = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"})
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9]+")
_FUNCTION: Final = re.compile(r"[A-Za-z][A-Za-z_]*")


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises ``CesqlParseError``."""
    if not isinstance(text, str):
        raise CesqlParseError(1, f"an expression is a string, got {type(text).__name__}")
    return _Parser(text).parse()


class _Open:
    """A chain of one tier being read: its operands so far and the operators between them."""

    __slots__ = ("items", "level", "ops")

    def __init__(self, level: int, first: Node, op: str) -> None:
        self.level = level
        self.items = [first]
        self.ops = [op]

    def close(self, last: Node) -> Chain:
        self.items.append(last)
        return Chain(self.level, self.items[0], list(zip(self.ops, self.items[1:], strict=True)), self.items[0].pos)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.nesting = 0

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != EOF:
            self.i += 1
        return token

    @staticmethod
    def keyword(token: Token) -> str | None:
        if token.kind == WORD:
            upper = token.text.upper()
            if upper in KEYWORDS:
                return upper
        return None

    @staticmethod
    def error(token: Token, message: str) -> CesqlParseError:
        return CesqlParseError(token.pos + 1, message)

    @staticmethod
    def checked(node: Node) -> Node:
        if node.depth > MAX_DEPTH:
            raise CesqlParseError(node.pos + 1, f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        return node

    def enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(token, f"more than {MAX_NESTING} nested parentheses, argument lists or IN lists")

    def expect(self, kind: str, what: str) -> Token:
        token = self.advance()
        if token.kind != kind:
            raise self.error(token, f"expected {what}, got {token.describe()}")
        return token

    # ------------------------------------------------------------------------------------------ grammar
    def parse(self) -> Node:
        node = self.expression()
        token = self.tok
        if token.kind != EOF:
            raise self.error(token, f"expected an operator or the end of the expression, got {token.describe()}")
        return node

    def expression(self) -> Node:
        """Operands joined by binary operators: a chain per tier, left to right, without recursion."""
        stack: list[_Open] = []
        current = self.operand()
        while (op := self.binary_operator()) is not None:
            level = LEVELS[op]
            while stack and stack[-1].level < level:
                current = self.checked(stack.pop().close(current))
            if stack and stack[-1].level == level:
                stack[-1].items.append(current)
                stack[-1].ops.append(op)
            else:
                stack.append(_Open(level, current, op))
            current = self.operand()
        while stack:
            current = self.checked(stack.pop().close(current))
        return current

    def binary_operator(self) -> str | None:
        token = self.tok
        if token.kind == OP and token.text in LEVELS:
            self.advance()
            return token.text
        kw = self.keyword(token)
        if kw in ("AND", "OR", "XOR"):
            self.advance()
            return kw
        return None

    def operand(self) -> Node:
        """Prefix operators, a primary, then LIKE / IN suffixes (prefix operators bind tighter)."""
        prefixes: list[Token] = []
        while True:
            token = self.tok
            if (token.kind == OP and token.text == "-") or self.keyword(token) == "NOT":
                prefixes.append(self.advance())
            else:
                break
        node = self.primary(prefixes)
        for token in reversed(prefixes):
            node = self.checked(Unary("-" if token.text == "-" else "NOT", node, token.pos))
        return self.suffixes(node)

    def primary(self, prefixes: list[Token]) -> Node:
        token = self.advance()
        kind = token.kind
        if kind == INT:
            negative = bool(prefixes) and prefixes[-1].text == "-"
            start = prefixes.pop() if negative else token
            return Literal(self.integer(token, negative, start), start.pos)
        if kind == OP and token.text == "+":
            digits = self.advance()
            if digits.kind != INT:
                raise self.error(token, "'+' is only the sign of an integer literal (there is no unary plus)")
            return Literal(self.integer(digits, False, token), token.pos)
        if kind == STR:
            return Literal(token.text, token.pos)
        if kind == LPAREN:
            self.enter(token)
            node = self.expression()
            self.expect(RPAREN, f"')' to close the '(' at position {token.pos + 1}")
            self.nesting -= 1
            return node
        if kind == WORD:
            kw = self.keyword(token)
            if kw in ("TRUE", "FALSE"):
                return Literal(kw == "TRUE", token.pos)
            if kw == "EXISTS":
                name = self.advance()
                if name.kind != WORD or self.keyword(name) is not None:
                    raise self.error(name, f"EXISTS needs an attribute name, got {name.describe()}")
                return Exists(self.identifier(name), token.pos)
            if kw is not None:
                raise self.error(token, f"expected a value, got the keyword {kw}")
            if self.tok.kind == LPAREN:
                return self.call(token)
            return Attribute(self.identifier(token), token.pos)
        raise self.error(token, f"expected a value (literal, attribute, function call or '('), got "
                                f"{token.describe()}")

    def integer(self, token: Token, negative: bool, start: Token) -> int:
        digits = token.text.lstrip("0") or "0"
        value = int(digits) if len(digits) <= 10 else INT_MAX + 2
        value = -value if negative else value
        if not INT_MIN <= value <= INT_MAX:
            raise self.error(start, f"integer literal {'-' if negative else ''}{token.text} is outside the 32-bit "
                                    "range (-2147483648 to 2147483647)")
        return value

    def identifier(self, token: Token) -> str:
        if _IDENTIFIER.fullmatch(token.text) is None:
            raise self.error(token, f"{token.describe()} is not an attribute name (letters and digits only)")
        return token.text.lower()

    def call(self, name: Token) -> Node:
        if _FUNCTION.fullmatch(name.text) is None:
            raise self.error(name, f"{name.describe()} is not a function name (letters and '_', starting with a "
                                   "letter)")
        opening = self.advance()
        self.enter(opening)
        args: list[Node] = []
        if self.tok.kind == RPAREN:
            self.advance()
        else:
            args = self.items(opening, "the arguments")
        self.nesting -= 1
        return self.checked(Call(name.text.upper(), args, name.pos))

    def items(self, opening: Token, what: str) -> list[Node]:
        """Expressions separated by commas up to the ')' matching ``opening`` (consumed)."""
        items = [self.expression()]
        while True:
            token = self.advance()
            if token.kind == RPAREN:
                return items
            if token.kind != COMMA:
                raise self.error(token, f"expected ',' or ')' in {what} opened at position {opening.pos + 1}, "
                                        f"got {token.describe()}")
            items.append(self.expression())

    def suffixes(self, node: Node) -> Node:
        while True:
            token = self.tok
            kw = self.keyword(token)
            negated = kw == "NOT"
            if negated:
                kw = self.keyword(self.tokens[self.i + 1])
                if kw not in ("LIKE", "IN"):
                    raise self.error(token, "NOT after a value must be followed by LIKE or IN (NOT LIKE, NOT IN)")
                self.advance()
            if kw == "LIKE":
                self.advance()
                pattern = self.advance()
                if pattern.kind != STR:
                    raise self.error(pattern, f"LIKE needs a string literal pattern, got {pattern.describe()}")
                node = self.checked(Like(node, pattern.text, negated, node.pos))
            elif kw == "IN":
                self.advance()
                opening = self.expect(LPAREN, "'(' and the set of values after IN")
                self.enter(opening)
                node = self.checked(In(node, self.items(opening, "the IN list"), negated, node.pos))
                self.nesting -= 1
            else:
                return node
