"""Exactly once under kill -9: `bridge run` with `delivery.guarantee: exactly_once` SIGKILLed at random points
while 50,000 events (with copies, disorder and malformed messages) flow, restarted each time; a read_committed
reader sees each unique event exactly once per route, in per-subject order, and each dead letter once."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.kafka import produce_fast
from testbed.process import BridgeProcess
from testbed.waiting import wait_for
from tests.eos.stream import drained, ml_stream, read_committed, tally

N_EVENTS = 50_000
KILLS = 5
RESULTS = Path(__file__).resolve().parent.parent.parent / ".bench" / "eos-crash.json"


def eos_config(bootstrap: str, raw: str, out: str, failed: str, dead: str, group: str, store: str,
               redis_url: str) -> dict[str, Any]:
    dedup: dict[str, Any] = {"enabled": True, "store": store, "window_seconds": 3600}
    if store == "redis":
        dedup.update(redis_url=redis_url, key_prefix=f"eos:{uuid.uuid4().hex}:")
    return {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [raw],
                     "group_id": group, "max_batch_size": 500, "session_timeout_ms": 6000,
                     "heartbeat_interval_ms": 500}],
        "dedup": dedup,
        "reorder": {"enabled": True, "max_delay_ms": 200},
        "routes": [{"name": "all", "topic": out},
                   {"name": "failed", "topic": failed, "filters": [{"cesql": "status = 'failed'"}]}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        "delivery": {"guarantee": "exactly_once"},
    }


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_kill_9_five_times_mid_stream_publishes_every_event_exactly_once(
    store: str, kafka_bootstrap: str, kafka_topic: Callable[..., str], redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """50,000 events (5 % copies, local disorder, malformed messages) flow while the daemon is SIGKILLed five
    times at random points and restarted: per route every unique event exactly once, none lost, no per-subject
    inversion, every dead letter exactly once; the dedup store (memory or Redis) decides nothing."""
    raw, out, failed = kafka_topic("eos-raw", 3), kafka_topic("eos-out", 3), kafka_topic("eos-failed", 2)
    dead = kafka_topic("eos-dead", 1)
    group = f"eos-{uuid.uuid4().hex[:8]}"
    cfg = eos_config(kafka_bootstrap, raw, out, failed, dead, group, store, redis_url)
    stream = ml_stream(N_EVENTS)
    rnd = random.Random(store)
    procs = [BridgeProcess(cfg, tmp_path, "run0").start()]
    kills: list[float] = []
    try:
        await asyncio.to_thread(procs[0].wait_ready)
        t0 = time.monotonic()

        async def feed() -> None:  # a steady stream (about 50 s), so every kill lands mid-stream
            msgs = stream.messages
            for i in range(0, len(msgs), 1000):
                part = msgs[i : i + 1000]
                await produce_fast(kafka_bootstrap, raw, [b for _, b in part], [k for k, _ in part])
                await asyncio.sleep(0.9)

        feeding = asyncio.ensure_future(feed())
        for n in range(KILLS):
            # kill only a bridge that is processing: it restored its state and admits batches (a killed member's
            # partitions reach the next one after its session expires, so a bridge killed sooner did nothing)
            await wait_for(lambda p=procs[-1]: "pipeline.rewound" in p.log_path.read_text(), within=60)
            await asyncio.sleep(rnd.uniform(0.5, 2.5))
            assert procs[-1].proc is not None and procs[-1].proc.poll() is None, "the bridge died by itself"
            procs[-1].kill()
            kills.append(round(time.monotonic() - t0, 1))
            procs.append(BridgeProcess(cfg, tmp_path, f"run{n + 1}").start())
        assert not feeding.done(), "the stream ended before the last kill: the kills did not land mid-stream"
        await feeding
        await drained(kafka_bootstrap, group, raw)
        took = time.monotonic() - t0
        routed = await read_committed(kafka_bootstrap, [out, failed], len(stream.ids) + len(stream.failed))
        dead_letters = await read_committed(kafka_bootstrap, [dead], stream.malformed, timeout=30)
        assert procs[-1].terminate() == 0
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.kill()
    everything = tally([r for r in routed if r.topic == out], stream.ids)
    only_failed = tally([r for r in routed if r.topic == failed], stream.failed)
    copies = Counter(r.value for r in dead_letters)
    logs = "".join(p.log_path.read_text() for p in procs)
    summary = {"store": store, "events": len(stream.ids), "copies_in_input": stream.duplicates,
               "malformed_in_input": stream.malformed, "kills_at_s": kills, "seconds": round(took, 1),
               "all": everything.as_dict(), "failed": only_failed.as_dict(),
               "dead_letters": len(dead_letters), "dead_letter_duplicates": sum(n - 1 for n in copies.values()),
               "aborted_transactions_logged": logs.count("pipeline.transaction_aborted"),
               "rewinds_logged": logs.count("pipeline.rewound")}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    with capsys.disabled():
        print(f"\nexactly-once crash test ({store}): {json.dumps(summary)}")
    for name, t in (("all", everything), ("failed", only_failed)):
        assert t.lost == [] and t.duplicates == 0 and t.unexpected == 0, f"route {name}: {t.as_dict()}"
        assert t.inversions == 0, f"route {name}: {t.as_dict()}"
    assert len(dead_letters) == stream.malformed and max(copies.values()) == 1
