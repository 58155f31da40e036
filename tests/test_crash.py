"""Crash safety: `bridge run` killed with SIGKILL mid-stream and restarted loses nothing; with the Redis
dedup store, events re-read after the restart are suppressed as duplicates."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import collect, collect_all_events, committed_and_end, produce
from testbed.process import BridgeProcess
from testbed.waiting import wait_for

N_EVENTS = 10_000
RESULTS = Path(__file__).resolve().parent.parent / ".bench" / "crash.json"


def crash_config(
    bootstrap: str, raw: str, out: str, dead: str, group: str, store: str, redis_url: str
) -> dict[str, Any]:
    dedup: dict[str, Any] = {"enabled": True, "store": store, "window_seconds": 3600}
    if store == "redis":
        dedup.update(redis_url=redis_url, key_prefix=f"crash:{uuid.uuid4().hex}:")
    return {
        "log": {"level": "warning"},
        "sources": [
            {
                "type": "kafka",
                "name": "kafka",
                "bootstrap_servers": bootstrap,
                "topics": [raw],
                "group_id": group,
                "max_batch_size": 200,
                "commit_interval_ms": 1000,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            }
        ],  # commits lag 1 s: a kill leaves published, uncommitted events
        "dedup": dedup,
        "reorder": {"enabled": True, "max_delay_ms": 200},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
    }


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_kill_9_mid_stream_then_restart_loses_nothing(
    store: str,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every one of 10,000 input ids reaches the output after a SIGKILL and a restart (zero loss); with the
    Redis store the re-read events are counted and suppressed instead of republished."""
    raw, out, dead = kafka_topic("crash-raw", 3), kafka_topic("crash-out", 3), kafka_topic("crash-dead", 1)
    group = f"crash-{uuid.uuid4().hex[:8]}"
    cfg = crash_config(kafka_bootstrap, raw, out, dead, group, store, redis_url)
    events = [sagemaker_training_event(f"e{i}", f"job{i % 1000}", i // 1000) for i in range(N_EVENTS)]
    bodies = [orjson.dumps(e) for e in events]

    first = BridgeProcess(cfg, tmp_path, "first").start()
    try:
        first.wait_ready()

        async def feed() -> None:  # a steady stream, so the kill lands mid-stream
            for i in range(0, N_EVENTS, 500):
                await produce(kafka_bootstrap, raw, bodies[i : i + 500])
                await asyncio.sleep(0.15)

        feeder = asyncio.create_task(feed())
        out_now = 0.0

        async def mid_stream() -> bool:  # 30 % out and some published events not yet committed
            nonlocal out_now
            out_now = first.metric_sum("bridge_events_out_total")
            if out_now < N_EVENTS * 0.3:
                return False
            committed_now, _ = await committed_and_end(kafka_bootstrap, group, raw)
            return out_now - sum(committed_now.values()) >= 500

        await wait_for(mid_stream, within=60, every=0.05, what=lambda: f"the kill point\n{first.log_tail()}")
        first.kill()
        await feeder
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.proc.kill()

    # what the killed process left behind: its published output and its committed input offsets
    committed, _ = await committed_and_end(kafka_bootstrap, group, raw)
    before = await collect(kafka_bootstrap, [out], until=int(out_now), timeout=20, settle=2.0)
    ids_before = Counter(r.event["id"] for r in before if r.event)
    dup_before = sum(c - 1 for c in ids_before.values())
    # input offsets below the commit were all published (no input is dropped here); the rest were re-read
    reread_published = len(ids_before) - sum(committed.values())

    with BridgeProcess(cfg, tmp_path, "second") as second:
        second.wait_ready()
        recs = await collect_all_events(kafka_bootstrap, [out], N_EVENTS, within=90)
        suppressed = second.metric_sum("bridge_duplicates_dropped_total")
        assert second.terminate() == 0

    counts = Counter(r.event["id"] for r in recs if r.event)
    lost = N_EVENTS - len([e for e in events if e["id"] in counts])
    duplicated = sum(c - 1 for c in counts.values())
    figures = {
        "store": store,
        "events_in": N_EVENTS,
        "published_before_kill": len(ids_before),
        "committed_before_kill": sum(committed.values()),
        "reread_after_restart_already_published": reread_published,
        "records_out": len(recs),
        "unique_out": len(counts),
        "lost": lost,
        "duplicates_in_output": duplicated,
        "duplicates_suppressed_after_restart": suppressed,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    previous[store] = figures
    RESULTS.write_text(json.dumps(previous, indent=2))
    with capsys.disabled():
        print(f"\ncrash test ({store} dedup store): {figures}")
    assert lost == 0
    assert set(counts) == {e["id"] for e in events}
    assert reread_published > 0, "the kill left no published-but-uncommitted events: the test proves nothing"
    republished = duplicated - dup_before  # re-read events published a second time after the restart
    if store == "redis":
        # each re-read event that had been published is suppressed or (if its id was not yet recorded when the
        # kill landed) republished; suppressions may also count redeliveries within the second run
        assert suppressed > 0
        assert republished + suppressed >= reread_published
        assert republished < reread_published
    else:
        # the memory store forgets on restart: every re-read event that had been published appears twice
        assert republished == reread_published
