"""A sink broker outage under a steady stream, through ``bridge run`` on Apache Kafka: the sink's broker (a private
node, apart from the source's) SIGKILLed and restarted twice mid-stream, or hung with SIGSTOP past the producer's
request timeout. The output is read from the beginning and counted: lost events, duplicates, and per-subject
inversions on each output partition; each test prints its figures on one line."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.testing.events import sagemaker_training_event
from testbed.apache_kafka import ApacheKafka
from testbed.kafka import OutRecord, collect, produce
from testbed.process import BridgeProcess
from testbed.waiting import wait_for_sync

SUBJECTS = 200
PER_SUBJECT = 30
RATE = 200.0  # events per second
SINK_TIMEOUT_MS = 5000  # the sink producer's request timeout: the pause outlasts it three times


@pytest.fixture
def sink_broker(tmp_path: Path) -> Iterator[ApacheKafka]:
    """A private Apache Kafka node for the sink (the source reads the session broker)."""
    broker = ApacheKafka(log_dir=tmp_path / "kafka-sink").start()
    try:
        yield broker
    finally:
        if broker.process is not None:
            broker.resume()
        broker.stop()


def outage_config(source: str, sink: str, raw: str, out: str, dead: str) -> dict[str, Any]:
    return {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": source, "topics": [raw],
                     "group_id": f"g-{raw}", "session_timeout_ms": 6000, "heartbeat_interval_ms": 500,
                     "commit_interval_ms": 200}],
        "dedup": {"enabled": True, "window_seconds": 3600},
        "reorder": {"enabled": True, "max_delay_ms": 200},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": sink, "request_timeout_ms": SINK_TIMEOUT_MS},
        "readiness": {"stall_seconds": 3, "probe_interval_seconds": 1, "probe_timeout_seconds": 2},
        "shutdown": {"grace_seconds": 6},
    }


def stream(tag: str) -> list[dict[str, Any]]:
    """``SUBJECTS`` subjects, each with ``PER_SUBJECT`` events whose sequence (the id's suffix, and the time) rises;
    interleaved round robin, as a live stream would."""
    return [sagemaker_training_event(f"{tag}-s{s}-{n}", f"{tag}-job{s}", 10 + n)
            for n in range(PER_SUBJECT) for s in range(SUBJECTS)]


async def feed(bootstrap: str, raw: str, events: list[dict[str, Any]]) -> None:
    """Produce at ``RATE`` events per second, keyed by job (a subject stays in one input partition)."""
    step = 50
    t0 = time.monotonic()
    for i in range(0, len(events), step):
        chunk = events[i : i + step]
        await produce(bootstrap, raw, [orjson.dumps(e) for e in chunk],
                      keys=[e["detail"]["TrainingJobName"].encode() for e in chunk])
        await asyncio.sleep(max(0.0, t0 + (i + step) / RATE - time.monotonic()))


def count(events: list[dict[str, Any]], recs: list[OutRecord]) -> dict[str, Any]:
    """Lost, duplicated, and inversions: per output partition in offset order, a subject's event (first copy)
    whose sequence is below one already seen for that subject."""
    ids = Counter(r.event["id"] for r in recs if r.event)
    lost = sum(1 for e in events if e["id"] not in ids)
    inversions: dict[int, int] = defaultdict(int)
    highest: dict[tuple[int, str], int] = {}
    seen: set[str] = set()
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        assert r.event is not None
        if r.event["id"] in seen:
            continue
        seen.add(r.event["id"])
        key, seq = (r.partition, r.event["subject"]), int(r.event["id"].rsplit("-", 1)[1])
        if seq < highest.get(key, -1):
            inversions[r.partition] += 1
        highest[key] = max(seq, highest.get(key, -1))
    return {"events": len(events), "records_out": len(recs), "lost": lost,
            "duplicates": sum(c - 1 for c in ids.values()), "inversions": sum(inversions.values()),
            "inversions_per_partition": dict(inversions), "partitions": len({r.partition for r in recs})}


def wait_out(bridge: BridgeProcess, at_least: float, within: float = 60.0) -> None:
    wait_for_sync(lambda: bridge.metric_sum("bridge_events_out_total") >= at_least, within=within, every=0.1)


def saw_unready(bridge: BridgeProcess, seconds: float) -> int:
    """Poll /readyz for ``seconds``: 1 if it answered 503 naming the sink at least once (the outage was seen)."""
    seen, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        code, body = bridge.get("/readyz", timeout=5)
        seen |= code == 503 and b"sink" in body
        time.sleep(0.25)
    return seen


async def run_outage(kafka: ApacheKafka, sink: ApacheKafka, tmp_path: Path, name: str,
                     fault: Callable[[BridgeProcess, int], Awaitable[int]],
                     capsys: pytest.CaptureFixture[str]) -> None:
    """Stream through a bridge while ``fault(bridge, total)`` injects the outage, then count the output."""
    tag = uuid.uuid4().hex[:6]
    raw = kafka.create_topic(f"raw-{tag}", 3)
    out, dead = sink.create_topic(f"out-{tag}", 3), sink.create_topic(f"dead-{tag}", 1)
    events = stream(tag)
    t0 = time.monotonic()
    with BridgeProcess(outage_config(kafka.bootstrap, sink.bootstrap, raw, out, dead), tmp_path, name) as bridge:
        bridge.wait_ready()
        feeding = asyncio.ensure_future(feed(kafka.bootstrap, raw, events))
        try:
            unready = await fault(bridge, len(events))
        finally:
            await feeding
        recs = await collect(sink.bootstrap, [out], until=len(events), timeout=60, settle=2.0)
        ready_after = bridge.get("/readyz", timeout=5)[0]
        metrics = bridge.metrics()
        assert bridge.terminate() == 0, bridge.log_tail()
    figures = count(events, recs)
    figures.update(
        outages_seen_on_readyz=unready, readyz_after=ready_after,
        publish_errors=metrics.get("bridge_publish_errors_total", 0.0),
        producer_replaced=bridge.log_path.read_text(errors="replace").count("kafka.producer_replaced"),
        dead_lettered=sum(v for k, v in metrics.items() if k.startswith("bridge_deadlettered_total")),
        seconds=round(time.monotonic() - t0, 1),
    )
    with capsys.disabled():
        print(f"\nsink outage ({name}): {figures}")
    assert figures["outages_seen_on_readyz"] == (2 if name == "kill" else 1), f"outage not seen: {figures}"
    assert ready_after == 200, bridge.log_tail()
    assert figures["lost"] == 0, figures
    assert figures["duplicates"] == 0, figures  # the idempotent producer (the default)
    assert figures["inversions"] == 0, figures
    assert figures["dead_lettered"] == 0, figures
    assert figures["partitions"] == 3


async def test_sink_broker_killed_and_restarted_twice_mid_stream(
    kafka: ApacheKafka, sink_broker: ApacheKafka, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sink broker SIGKILLed and restarted twice while 6,000 events stream in: every event out exactly once,
    none lost, none dead-lettered, and no subject out of order on any output partition."""

    async def kill_twice(bridge: BridgeProcess, total: int) -> int:
        unready = 0
        for fraction in (0.25, 0.6):
            await asyncio.to_thread(wait_out, bridge, total * fraction)
            await asyncio.to_thread(sink_broker.kill)
            unready += await asyncio.to_thread(saw_unready, bridge, 4.0)
            await sink_broker.astart()
        return unready

    await run_outage(kafka, sink_broker, tmp_path, "kill", kill_twice, capsys)


async def test_sink_broker_hung_past_every_timeout_mid_stream(
    kafka: ApacheKafka, sink_broker: ApacheKafka, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sink broker hung (SIGSTOP) for three request timeouts while events stream in, then resumed: every
    event out exactly once, none lost, none dead-lettered, and no subject out of order on any output partition."""

    async def hang(bridge: BridgeProcess, total: int) -> int:
        await asyncio.to_thread(wait_out, bridge, total * 0.3)
        sink_broker.pause()
        try:
            return await asyncio.to_thread(saw_unready, bridge, 3 * SINK_TIMEOUT_MS / 1000)
        finally:
            sink_broker.resume()

    await run_outage(kafka, sink_broker, tmp_path, "pause", hang, capsys)
