"""Readiness: the stall watch and the broker probes behind /readyz, and the shutdown watchdog.

- **Stall**: the pipeline has pending work (events in flight, batches queued or being admitted) and nothing was
  settled or acked (``Pipeline.last_progress``) for ``readiness.stall_seconds``. Measured from the later of the
  last progress and the moment work became pending, so a first batch after a long idle is not a stall.
- **Brokers**: every ``readiness.probe_interval_seconds`` each Kafka client (the sink's producer, each Kafka
  source's consumer) is asked for cluster metadata; no answer within ``probe_timeout_seconds`` makes it
  unreachable. This sees a broker that hangs (SIGSTOP, network partition) even when there is no work.

None of this is liveness: /healthz stays 200 through every broker or store outage (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable

import structlog

from bridge.aio import reraise_if_cancelled
from bridge.logs import scrub
from bridge.model import Probe

log = structlog.get_logger("bridge.health")

class StallWatch:
    """Decides whether the pipeline is stalled, from pending work and the time of the last progress."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._pending_since: float | None = None
        self.stalled = False
        self.age = 0.0

    def observe(self, pending: bool, last_progress: float) -> bool:
        """Record the current state; returns whether the pipeline is stalled."""
        now = self._clock()
        if not pending:
            self._pending_since = None
            self.age = 0.0
            self.stalled = False
            return False
        if self._pending_since is None:
            self._pending_since = now
        self.age = now - max(last_progress, self._pending_since)
        self.stalled = self.age >= self.stall_seconds
        return self.stalled


class BrokerProbes:
    """Probes Kafka clients periodically; ``errors`` holds the reason of each unreachable one."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.errors: dict[str, str] = {}

    async def probe(self, name: str, probe: Probe) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                await probe()
        except (asyncio.CancelledError, Exception) as exc:
            reraise_if_cancelled(exc)
            if isinstance(exc, TimeoutError | asyncio.CancelledError):
                reason = f"no answer within {self.timeout:g} s"
            else:
                reason = scrub(f"{type(exc).__name__}: {exc}")
            if self.errors.get(name) != reason:
                log.warning("health.broker_unreachable", client=name, error=reason)
            self.errors[name] = reason
            return False
        if name in self.errors:
            log.info("health.broker_reachable", client=name)
            del self.errors[name]
        return True

    async def run(self, targets: Callable[[], dict[str, Probe | None]], stopping: asyncio.Event) -> None:
        """Probe every target each interval until ``stopping`` is set; targets not started are skipped."""
        while not stopping.is_set():
            for name, probe in targets().items():
                if probe is None:
                    self.errors.pop(name, None)
                    continue
                await self.probe(name, probe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)


class ShutdownWatchdog:
    """Ends the process when a shutdown outlasts its grace period, whatever is blocked (a thread, not the event
    loop, so a stuck loop cannot hold it back). Armed by ``bridge run`` only, never inside a test process."""

    def __init__(self, exit_code: int = 3, exit_fn: Callable[[int], None] = os._exit) -> None:
        self.exit_code = exit_code
        self._exit = exit_fn
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        if self._timer is None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        log.error("health.shutdown_watchdog_exit", detail="shutdown grace period exceeded; exiting now "
                  "(undelivered events stay unacknowledged upstream)")
        self._exit(self.exit_code)
