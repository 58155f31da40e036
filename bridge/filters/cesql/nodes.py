"""The syntax tree of a CESQL expression, as the parser builds it and the compiler reads it.

A run of binary operators of one precedence tier is one ``Chain`` node (``a + b - c`` is ``Chain(+, a, [(+, b),
(-, c)])``, evaluated left to right), so a long ``OR`` list is wide, not deep. Every node knows its ``pos``
(0-based offset of its first character) and its ``depth`` (1 for a leaf); ``repr`` writes the tree as an
s-expression, which the tests use to pin precedence and associativity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from bridge.filters.cesql.errors import Value

__all__ = ["LEVELS", "Attribute", "Call", "Chain", "Exists", "In", "Like", "Literal", "Node", "Unary", "walk"]

# Binary operators by precedence tier, tightest first (spec section 3.6).
LEVELS: Final[dict[str, int]] = {
    "*": 1, "/": 1, "%": 1,
    "+": 2, "-": 2,
    "=": 3, "!=": 3, "<>": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
    "AND": 4, "OR": 4, "XOR": 4,
}
MULTIPLICATIVE: Final = 1
ADDITIVE: Final = 2
COMPARISON: Final = 3
LOGICAL: Final = 4


class Node:
    __slots__ = ("depth", "pos")

    def __init__(self, pos: int, children: Sequence[Node] = ()) -> None:
        self.pos: int = pos
        self.depth: int = 1 + max((c.depth for c in children), default=0)


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, value: Value, pos: int) -> None:
        super().__init__(pos)
        self.value = value

    def __repr__(self) -> str:
        if self.value.__class__ is bool:
            return "TRUE" if self.value else "FALSE"
        return repr(self.value)


class Attribute(Node):
    """A context attribute or extension, by its (lower-cased) name."""

    __slots__ = ("name",)

    def __init__(self, name: str, pos: int) -> None:
        super().__init__(pos)
        self.name = name

    def __repr__(self) -> str:
        return self.name


class Exists(Node):
    __slots__ = ("name",)

    def __init__(self, name: str, pos: int) -> None:
        super().__init__(pos)
        self.name = name

    def __repr__(self) -> str:
        return f"(EXISTS {self.name})"


class Unary(Node):
    """``NOT x`` or ``-x``."""

    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, pos: int) -> None:
        super().__init__(pos, (operand,))
        self.op = op
        self.operand = operand

    def __repr__(self) -> str:
        return f"({self.op} {self.operand!r})"


class Chain(Node):
    """``first op1 x1 op2 x2 ...`` for operators of one tier, evaluated left to right."""

    __slots__ = ("first", "level", "rest")

    def __init__(self, level: int, first: Node, rest: Sequence[tuple[str, Node]], pos: int) -> None:
        super().__init__(pos, (first, *(n for _, n in rest)))
        self.level = level
        self.first = first
        self.rest = tuple(rest)

    def __repr__(self) -> str:
        text = repr(self.first)
        for op, node in self.rest:
            text = f"({op} {text} {node!r})"
        return text


class Like(Node):
    __slots__ = ("negated", "operand", "pattern")

    def __init__(self, operand: Node, pattern: str, negated: bool, pos: int) -> None:
        super().__init__(pos, (operand,))
        self.operand = operand
        self.pattern = pattern
        self.negated = negated

    def __repr__(self) -> str:
        return f"({'NOT LIKE' if self.negated else 'LIKE'} {self.operand!r} {self.pattern!r})"


class In(Node):
    __slots__ = ("items", "negated", "operand")

    def __init__(self, operand: Node, items: Sequence[Node], negated: bool, pos: int) -> None:
        super().__init__(pos, (operand, *items))
        self.operand = operand
        self.items = tuple(items)
        self.negated = negated

    def __repr__(self) -> str:
        items = " ".join(repr(i) for i in self.items)
        return f"({'NOT IN' if self.negated else 'IN'} {self.operand!r} [{items}])"


class Call(Node):
    """A function invocation; ``name`` is upper-cased (function names are case-insensitive)."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: Sequence[Node], pos: int) -> None:
        super().__init__(pos, args)
        self.name = name
        self.args = tuple(args)

    def __repr__(self) -> str:
        return f"({self.name}{''.join(' ' + repr(a) for a in self.args)})"


def walk(root: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children (iterative)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Chain):
            stack.extend(n for _, n in reversed(node.rest))
            stack.append(node.first)
        elif isinstance(node, Unary | Like):
            stack.append(node.operand)
        elif isinstance(node, In):
            stack.extend(reversed(node.items))
            stack.append(node.operand)
        elif isinstance(node, Call):
            stack.extend(reversed(node.args))
