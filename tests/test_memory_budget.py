"""The memory budget holds under a backlog: `bridge run` drains a backlog whose parsed form would need several
times its memory limit, delivering every event, and its peak RSS stays within the limit (real tansu broker)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import committed_and_end, ids_on, produce_fast
from testbed.process import BridgeProcess
from testbed.waiting import ConditionNotReached, wait_for

MEMORY_MB = 256
MARGIN_MB = 0  # the limit itself is the bound: the budget already reserves room for the interpreter


def _backlog(n_small: int, n_large: int) -> tuple[list[bytes], list[bytes]]:
    """``n_small`` events of about 4 KB and ``n_large`` of about 300 KB, over 2,000 subjects, in time order."""
    bodies: list[bytes] = []
    keys: list[bytes] = []
    for i in range(n_small + n_large):
        job = f"job{i % 2000}"
        ev: dict[str, Any] = sagemaker_training_event(f"e{i}", job, i // 2000)
        ev["detail"]["Notes"] = ("x" * 300_000) if i % max(1, (n_small + n_large) // max(1, n_large)) == 0 \
            and n_large else ("y" * 4_000)
        bodies.append(orjson.dumps(ev))
        keys.append(job.encode())
    return bodies, keys


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_backlog_drains_within_the_memory_limit(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A 40,000-event backlog (about 170 MB raw, over 1 GB as parsed events) with 300 KB events mixed in drains
    under limits.memory_mb 256 with a reorder delay (20 s) that would hold it all: every event is published once,
    every offset committed, and the process never exceeds 256 MB resident (sources pause, the reorder buffer
    flushes early instead)."""
    raw, out, dead = kafka_topic("mem-raw", 4), kafka_topic("mem-out", 4), kafka_topic("mem-dead", 1)
    bodies, keys = _backlog(40_000, 100)
    await produce_fast(kafka_bootstrap, raw, bodies, keys)
    raw_mb = sum(map(len, bodies)) / 2**20
    group = f"bridge-{raw}"
    cfg = {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": kafka_bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "reorder": {"max_delay_ms": 20_000, "max_events": 1_000_000},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        "limits": {"memory_mb": MEMORY_MB},
    }
    with BridgeProcess(cfg, tmp_path) as bridge:
        assert bridge.proc is not None
        bridge.wait_ready()
        committed: dict[int, int] = {}

        async def drained() -> bool:
            nonlocal committed
            assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_tail()
            committed, _ = await committed_and_end(kafka_bootstrap, group, raw)
            return sum(committed.values()) >= len(bodies)

        with contextlib.suppress(ConditionNotReached):  # asserted below, with the offsets
            await wait_for(drained, within=300, every=1.0)
        peak = _peak_rss_mb(bridge.proc.pid)
        metrics = bridge.metrics()
        assert bridge.terminate() == 0, bridge.log_tail()
    assert sum(committed.values()) == len(bodies), f"not drained: {committed}"
    ids = await ids_on(kafka_bootstrap, out, len(bodies))
    assert len(ids) == len(bodies) and len(set(ids)) == len(bodies)
    assert metrics['bridge_events_out_total{route="all"}'] == len(bodies)
    assert metrics["bridge_reorder_early_flushes_total"] > 0  # the byte bound, not the 20 s delay, released most
    assert metrics["bridge_memory_limit_bytes"] == MEMORY_MB * 2**20
    print(f"memory budget test: backlog {len(bodies)} events, {raw_mb:.0f} MB raw; peak RSS {peak:.0f} MB "
          f"(limit {MEMORY_MB} MB); source pauses {metrics.get('bridge_source_pauses_total', 0):.0f}, "
          f"early flushes {metrics['bridge_reorder_early_flushes_total']:.0f}")
    assert peak <= MEMORY_MB + MARGIN_MB, f"peak RSS {peak:.0f} MB over the {MEMORY_MB} MB limit"
