"""Wait for a condition instead of sleeping a fixed time: the one polling helper of the tests.

``wait_for`` (async; ``predicate`` may be a coroutine function) and ``wait_for_sync`` (blocking, for tests that
drive a bridge process) call ``predicate`` until it returns something truthy and return that value; past
``within`` seconds they fail with ``what`` (a text, or a function giving it, e.g. with a process's log tail) and
the last value seen. Generous deadlines keep tests robust on a
loaded machine without weakening what they assert.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


class ConditionNotReached(AssertionError):
    """The awaited condition did not hold within the deadline."""


What = str | Callable[[], str]


def _fail(what: What, within: float, last: object) -> ConditionNotReached:
    text = what() if callable(what) else what
    return ConditionNotReached(f"{text or 'condition'} not reached within {within:g} s (last: {last!r})")


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]], within: float = 30.0, what: What = "", every: float = 0.02
) -> T: ...


@overload
async def wait_for(predicate: Callable[[], T], within: float = 30.0, what: What = "", every: float = 0.02) -> T: ...


async def wait_for(predicate: Callable[[], Any], within: float = 30.0, what: What = "", every: float = 0.02) -> Any:
    """Poll ``predicate`` every ``every`` seconds on the running loop until it is truthy; return its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise _fail(what, within, value)
        await asyncio.sleep(every)


def wait_for_sync(predicate: Callable[[], T], within: float = 30.0, what: What = "", every: float = 0.1) -> T:
    """``wait_for`` for blocking tests (a bridge subprocess, a broker started in a thread)."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _fail(what, within, value)
        time.sleep(every)
