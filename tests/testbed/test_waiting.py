"""The tests' one polling helper: returns the first truthy value, awaits async predicates, fails with what and
the last value seen."""

from __future__ import annotations

import itertools

import pytest

from testbed.waiting import ConditionNotReached, wait_for, wait_for_sync


async def test_wait_for_returns_the_first_truthy_value_of_a_plain_or_async_predicate() -> None:
    """The predicate is called until it returns something truthy, which is returned; a coroutine function's
    result is awaited."""
    counter = itertools.count()
    assert await wait_for(lambda: [n] if (n := next(counter)) >= 3 else [], every=0) == [3]
    calls = itertools.count()

    async def later() -> str:
        return "done" if next(calls) >= 2 else ""

    assert await wait_for(later, every=0) == "done"


async def test_wait_for_fails_after_the_deadline_naming_what_and_the_last_value() -> None:
    """Past ``within`` it raises ConditionNotReached (an AssertionError) with the description, computed only
    then when it is a function, and the last value the predicate gave."""
    described: list[int] = []

    def what() -> str:
        described.append(1)
        return "the moon"

    with pytest.raises(ConditionNotReached, match=r"the moon not reached within 0.05 s \(last: 0\)"):
        await wait_for(lambda: 0, within=0.05, what=what)
    assert described == [1]
    with pytest.raises(AssertionError, match="condition not reached"):
        wait_for_sync(lambda: None, within=0.05, every=0.01)
    assert wait_for_sync(lambda: "x", within=0.05) == "x"
