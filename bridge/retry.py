"""One backoff policy for every retry loop, and the policies of the loops, in one place.

A retry loop keeps a ``Retries`` (its consecutive failures under a ``Backoff`` policy): ``failed()`` counts a
failure and says how long to wait before the next attempt, ``succeeded()`` starts over. The n-th consecutive
failure waits ``min(cap, initial * factor**(n-1))``, less up to ``jitter`` of it at random, so replicas that
failed together (a broker restart) do not retry in lockstep; a delay never exceeds ``cap``.

The waiting itself stays with the loop, because the loops wait differently: most ``await asyncio.sleep`` (a
cancellation ends the wait at once), the daemon waits on its stop event (``pause``), and the dedup stage in
mode ``pass`` does not wait at all but skips the store until the delay has passed. The retry libraries looked at
(tenacity, stamina, backoff) wrap a call or a block and do the waiting themselves; tenacity could be bent to the
first two cases (a custom ``sleep``, a predicate that tells a real cancellation from a ``CancelledError`` raised
inside a client library, ``bridge.aio``), not to the third, and none of that is shorter than this helper. So the
policy is one small module rather than a new dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial`` and ``cap`` in seconds, ``jitter`` a fraction in [0, 1)."""

    initial: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got initial={self.initial} cap={self.cap}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after ``failures`` consecutive failures (``failures >= 1``)."""
        base = self.initial
        for _ in range(max(0, failures - 1)):
            base *= self.factor
            if base >= self.cap:
                break
        base = min(base, self.cap)
        return base * (1.0 - self.jitter * rand())

    def starting_at(self, initial: float) -> Backoff:
        """This policy with another first delay (the cap grows to it if need be)."""
        return replace(self, initial=initial, cap=max(self.cap, initial))

    def retries(self, rand: Callable[[], float] = random.random) -> Retries:
        return Retries(self, rand)


class Retries:
    """The consecutive failures of one retry loop under a ``Backoff`` policy."""

    __slots__ = ("_rand", "failures", "last_delay", "policy")

    def __init__(self, policy: Backoff, rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rand = rand
        self.failures = 0
        self.last_delay = 0.0

    def failed(self) -> float:
        """Count one failure; return the delay before the next attempt."""
        self.failures += 1
        self.last_delay = round(self.policy.delay(self.failures, self._rand), 3)
        return self.last_delay

    def succeeded(self) -> None:
        self.failures = 0
        self.last_delay = 0.0


async def pause(seconds: float, stop: asyncio.Event) -> bool:
    """Wait ``seconds``, or less when ``stop`` is set meanwhile; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


# -- the retry loops' policies -------------------------------------------------------------------------------
CONNECT = Backoff(0.5, 30.0)
"""Daemon: (re)connecting the sink and each source, also after a source failed while reading."""
PUBLISH = Backoff(0.05, 5.0)
"""Delivery: a publish that failed (not permanently) is retried until it succeeds or shutdown gives up."""
DEDUP_STORE = Backoff(0.1, 5.0)
"""Dedup: a failing store call (policy ``block``: retried; ``pass``: the store is skipped for the delay)."""
SQS_RECEIVE = Backoff(1.0, 30.0)
"""SQS: a failed ``ReceiveMessage`` (first delay: ``sources[].error_backoff_seconds``)."""
SQS_DELETE = Backoff(0.2, 5.0)
"""SQS: entries of ``DeleteMessageBatch`` that failed, retried ``sources[].delete_retries`` times."""
COMMIT = Backoff(0.5, 10.0)
"""Kafka offset commits and Event Hubs checkpoints that failed: retried until they succeed or the source stops."""
