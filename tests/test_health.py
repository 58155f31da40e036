"""bridge.health: the stall watch (pending work without progress), broker probes and the shutdown watchdog."""

from __future__ import annotations

import asyncio
import time

from bridge.health import BrokerProbes, ShutdownWatchdog, StallWatch


def test_stall_needs_pending_work_and_no_progress_for_the_whole_period() -> None:
    """Idle is never a stall; pending work is a stall only after stall_seconds without progress, counted from
    the later of the last progress and the moment work became pending; progress or idleness clears it."""
    now = [1000.0]
    watch = StallWatch(10, clock=lambda: now[0])
    assert watch.observe(False, 0.0) is False  # idle for ages: fine
    now[0] += 1
    assert watch.observe(True, 0.0) is False  # work just arrived after a long idle: not yet a stall
    now[0] += 9.5
    assert watch.observe(True, 0.0) is False and 9 < watch.age < 10
    now[0] += 0.6
    assert watch.observe(True, 0.0) is True and watch.stalled
    assert watch.observe(True, now[0] - 2) is False and watch.age == 2  # progress two seconds ago
    assert watch.observe(False, 0.0) is False and watch.age == 0


async def test_probes_report_unreachable_then_recovered() -> None:
    """A probe that hangs past the timeout or raises makes its client unreachable with the reason; the next
    successful probe clears it."""
    probes = BrokerProbes(interval=0.01, timeout=0.05)
    state = {"mode": "hang"}

    async def probe() -> None:
        if state["mode"] == "hang":
            await asyncio.sleep(10)
        if state["mode"] == "raise":
            raise ConnectionError("refused")

    assert await probes.probe("sink", probe) is False
    assert probes.errors == {"sink": "no answer within 0.05 s"}
    state["mode"] = "raise"
    assert await probes.probe("sink", probe) is False
    assert probes.errors == {"sink": "ConnectionError: refused"}
    state["mode"] = "ok"
    assert await probes.probe("sink", probe) is True
    assert probes.errors == {}


def test_watchdog_fires_after_the_grace_period_unless_disarmed() -> None:
    """The watchdog calls its exit function once the armed time has passed; a disarmed one never does."""
    codes: list[int] = []
    dog = ShutdownWatchdog(exit_code=3, exit_fn=codes.append)
    dog.arm(0.05)
    time.sleep(0.3)
    assert codes == [3]
    quiet = ShutdownWatchdog(exit_fn=codes.append)
    quiet.arm(0.05)
    quiet.disarm()
    time.sleep(0.2)
    assert codes == [3]
