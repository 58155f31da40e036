"""The one backoff policy: exponential growth to a cap, jitter that only shortens, resets, interruptible pauses."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import retry
from bridge.retry import Backoff, pause


def test_delays_double_up_to_the_cap_and_start_over_after_a_success() -> None:
    """Without jitter the n-th consecutive failure waits initial * 2**(n-1), never more than the cap; a success
    starts over from the initial delay."""
    retries = Backoff(0.5, 3.0, jitter=0.0).retries()
    assert [retries.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retries.failures == 5
    retries.succeeded()
    assert retries.failed() == 0.5


@given(
    initial=st.floats(0.001, 10.0),
    spread=st.floats(1.0, 100.0),
    factor=st.floats(1.0, 4.0),
    jitter=st.floats(0.0, 0.99),
    failures=st.integers(1, 10_000),
    rand=st.floats(0.0, 1.0, exclude_max=True),
)
def test_a_delay_is_the_capped_exponential_less_at_most_its_jitter(
    initial: float, spread: float, factor: float, jitter: float, failures: int, rand: float
) -> None:
    """Whatever the policy and however many failures, a delay lies within [base * (1 - jitter), base], where
    base = min(cap, initial * factor**(failures - 1)): never above the cap, never zero."""
    policy = Backoff(initial, initial * spread, factor, jitter)
    grows_past_cap = (failures - 1) * math.log(factor) >= math.log(policy.cap / initial)
    base = policy.cap if grows_past_cap else min(policy.cap, initial * factor ** (failures - 1))
    delay = policy.delay(failures, lambda: rand)
    assert base * (1 - jitter) * (1 - 1e-9) <= delay <= base * (1 + 1e-9)
    assert 0 < delay <= policy.cap * (1 + 1e-9)


def test_jitter_spreads_the_delays_of_loops_that_failed_together() -> None:
    """Loops failing at the same moment get different delays (default 20 % jitter), each at most 20 % below the
    policy's delay."""
    first = [retry.CONNECT.retries().failed() for _ in range(50)]
    assert len(set(first)) > 1 and all(0.4 <= d <= 0.5 for d in first)


def test_invalid_policies_are_refused() -> None:
    """A policy without a positive first delay, with a cap below it, a shrinking factor or jitter of 100 % or
    more is refused when it is made."""
    for kwargs in ({"initial": 0, "cap": 1}, {"initial": 2, "cap": 1}, {"initial": 1, "cap": 2, "factor": 0.5},
                   {"initial": 1, "cap": 2, "jitter": 1.0}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)  # type: ignore[arg-type]


def test_starting_at_moves_the_first_delay_and_keeps_the_cap_above_it() -> None:
    """A loop configured with its own first delay keeps the policy's growth and cap (raised if below it)."""
    assert Backoff(1.0, 30.0).starting_at(2.0) == Backoff(2.0, 30.0)
    assert Backoff(1.0, 30.0).starting_at(60.0) == Backoff(60.0, 60.0)


async def test_pause_ends_early_when_stopped_and_a_cancellation_ends_it_at_once() -> None:
    """``pause`` returns True as soon as the stop event is set, False after the full delay otherwise, and a
    cancellation of the waiting task is not swallowed."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    t0 = loop.time()
    assert await pause(0.05, stop) is False
    assert loop.time() - t0 >= 0.04
    loop.call_later(0.05, stop.set)
    t0 = loop.time()
    assert await pause(30.0, stop) is True
    assert loop.time() - t0 < 5.0
    waiter = asyncio.create_task(pause(30.0, asyncio.Event()))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
