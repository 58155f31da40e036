"""The guard around every call to a remote store (the dedup ids and the last states of ``bridge.state``, which
live in the same Redis): a timeout per call, backoff, and the ``on_store_error`` policy.

``block`` (default) retries with backoff and holds the caller (nothing is published unchecked, the source
positions stay unacknowledged); ``pass`` tries once, raises ``StoreBypassed`` (the caller goes on unchecked,
counting it) and tries the store again only after a backoff. ``store_error`` says what is wrong while calls
fail: readiness reads it through ``StoreHealth``, which the pipeline's plug-ins offer too.

It sits below both the pipeline (``bridge.pipeline.dedup``) and its plug-ins (``bridge.state``), so neither
imports the other for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

import structlog

from bridge.metrics import MetricGroup, Metrics
from bridge.retry import DEDUP_STORE, Backoff

log = structlog.get_logger("bridge.dedup")
T = TypeVar("T")
A = TypeVar("A")

OnStoreError = Literal["block", "pass"]


class StoreBypassed(Exception):
    """The store is failing and ``on_store_error`` is ``pass``: the call was skipped."""


class StoreMetrics(MetricGroup):
    """What a guard writes (through its ``on_store_failure``): the failed calls of the dedup and state stores."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.errors = m.counter("bridge_dedup_store_errors", "Failed or timed-out dedup store calls")


class StoreHealth(Protocol):
    """What readiness reads of a guarded store: what is wrong (``None``: the last call succeeded) and the policy."""

    @property
    def store_error(self) -> str | None: ...

    @property
    def on_store_error(self) -> OnStoreError: ...


class StoreGuard:
    """Timeouts, backoff and the ``on_store_error`` policy around the calls to one remote store: the dedup ids,
    and the last states of ``bridge.state``, which live in the same Redis. ``store_error`` says what is wrong
    while calls fail (readiness reads it)."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        on_store_error: OnStoreError = "block",
        backoff: Backoff = DEDUP_STORE,
        on_store_failure: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        what: str = "dedup store",
    ) -> None:
        self.timeout = timeout
        self.on_store_error: OnStoreError = on_store_error
        self._retries = backoff.retries()
        self._skip_until = 0.0
        self._on_store_failure = on_store_failure
        self._clock = clock
        self._what = what
        self.store_error: str | None = None
        """What is wrong with the store while calls fail (``None`` when the last call succeeded)."""
        self.store_failing_since: float | None = None

    async def call(self, op: Callable[[A], Awaitable[T]], arg: A) -> T:
        """One store operation with a timeout. ``block``: retried with backoff until it succeeds (the pipeline
        waits: backpressure, nothing published unchecked). ``pass``: tried once, and not again until the backoff
        has passed; a failure raises ``StoreBypassed``."""
        while True:
            if self.on_store_error == "pass" and self.store_error is not None and self._clock() < self._skip_until:
                raise StoreBypassed(self.store_error)
            try:
                async with asyncio.timeout(self.timeout):
                    result = await op(arg)
            except Exception as exc:
                delay = self._retries.failed()
                self._failed(exc, delay)
                if self.on_store_error == "pass":
                    self._skip_until = self._clock() + delay
                    raise StoreBypassed(self.store_error) from None
                await asyncio.sleep(delay)
                continue
            if self.store_failing_since is not None:  # (not the first answer of a store never contacted)
                log.info("store.recovered", store=self._what, was=self.store_error)
            self.store_error = None
            self.store_failing_since = None
            self._retries.succeeded()
            return result

    def _failed(self, exc: Exception, delay: float) -> None:
        if isinstance(exc, TimeoutError):
            reason = f"TimeoutError: no answer within {self.timeout:g} s"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        if self.store_failing_since is None:
            self.store_failing_since = self._clock()
        self.store_error = reason
        if self._on_store_failure is not None:
            self._on_store_failure()
        log.warning("store.unavailable", store=self._what, policy=self.on_store_error, retry_in=delay, error=reason)
