"""Faults through ``bridge run`` on private brokers: a dedup Redis killed and restarted or rejecting the
password, the source or the sink Kafka broker paused 20 s with SIGSTOP. Each asserts recovery, nothing lost,
the /readyz transitions (503 with the reason, then 200) and SIGTERM within ``shutdown.grace_seconds``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.testing.events import sagemaker_training_event
from testbed.apache_kafka import ApacheKafka
from testbed.kafka import OutRecord, collect, produce
from testbed.process import BridgeProcess
from testbed.servers import RedisServer
from testbed.waiting import ConditionNotReached, wait_for_sync

pytestmark = pytest.mark.broker  # Kafka brokers and Redis servers of its own

GRACE = 6.0
PAUSE = 20.0


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApacheKafka, ApacheKafka]]:
    """Two private Apache Kafka brokers (never the session one): the source's and the sink's, to pause separately."""
    source = ApacheKafka(log_dir=tmp_path_factory.mktemp("kafka-src")).start()
    sink = ApacheKafka(log_dir=tmp_path_factory.mktemp("kafka-sink")).start()
    try:
        yield source, sink
    finally:
        for b in (source, sink):
            if b.process is not None:
                b.resume()
            b.stop()


def fault_config(src: ApacheKafka, sink: ApacheKafka, raw: str, out: str, dead: str,
                 dedup: dict[str, Any]) -> dict[str, Any]:
    return {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": src.bootstrap, "topics": [raw],
                     "group_id": f"g-{raw}", "session_timeout_ms": 6000, "heartbeat_interval_ms": 500,
                     "commit_interval_ms": 200}],
        "dedup": {"enabled": True, "window_seconds": 3600, **dedup},
        "reorder": {"enabled": True, "max_delay_ms": 200},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": sink.bootstrap},
        "readiness": {"stall_seconds": 3, "probe_interval_seconds": 1, "probe_timeout_seconds": 2},
        "shutdown": {"grace_seconds": GRACE},
    }


def batch(tag: str, n: int, jobs: int = 5) -> list[dict[str, Any]]:
    """``n`` events over ``jobs`` subjects, steps in time order within each subject."""
    return [sagemaker_training_event(f"{tag}-{i}", f"{tag}-job{i % jobs}", 10 + i // jobs) for i in range(n)]


async def send(src: ApacheKafka, raw: str, events: list[dict[str, Any]]) -> None:
    """Produce keyed by job, so each subject stays in one input partition."""
    await produce(src.bootstrap, raw, [orjson.dumps(e) for e in events],
                  keys=[e["detail"]["TrainingJobName"].encode() for e in events])


def readyz(bridge: BridgeProcess) -> tuple[int, dict[str, Any]]:
    code, body = bridge.get("/readyz", timeout=5)
    return code, orjson.loads(body)


def wait_readyz(bridge: BridgeProcess, want: int, contains: str = "", timeout: float = 30.0) -> dict[str, Any]:
    """Poll /readyz until it answers ``want`` (and, for 503, a reason containing ``contains``)."""
    last: Any = None

    def answered() -> dict[str, Any] | None:
        nonlocal last
        code, body = last = readyz(bridge)
        return body if code == want and (not contains or any(contains in r for r in body.get("reasons", []))) \
            else None

    try:
        return wait_for_sync(answered, within=timeout, every=0.25)
    except ConditionNotReached:
        raise AssertionError(f"/readyz never answered {want} with {contains!r}; last {last}\n{bridge.log_tail()}") \
            from None


def wait_metric(bridge: BridgeProcess, name: str, ok: Callable[[float], bool], timeout: float = 30.0) -> float:
    try:
        wait_for_sync(lambda: ok(bridge.metric_sum(name)), within=timeout, every=0.2)
    except ConditionNotReached:
        raise AssertionError(f"{name} = {bridge.metric_sum(name)}\n{bridge.log_tail()}") from None
    return bridge.metric_sum(name)


def sigterm_within_grace(bridge: BridgeProcess) -> float:
    """SIGTERM; assert the process exits 0 within the grace period (the graceful path bounds every step; the
    watchdog, exit code 3, is only a last resort); return how long it took."""
    t0 = time.monotonic()
    code = bridge.terminate(timeout=GRACE + 30)
    took = time.monotonic() - t0
    assert took < GRACE, f"exit took {took:.1f} s > grace {GRACE} s (exit code {code})\n{bridge.log_tail()}"
    assert code == 0, f"exit code {code} (3: the watchdog had to end it)\n{bridge.log_tail()}"
    return took


async def output(sink: ApacheKafka, out: str, until: int, timeout: float = 60.0) -> list[OutRecord]:
    return await collect(sink.bootstrap, [out], until=until, timeout=timeout, settle=1.0)


def assert_order(records: list[OutRecord]) -> None:
    """Per subject, the first appearance of each event follows the input order (steps ascending)."""
    steps: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert r.event is not None
        if r.event["id"] in seen:
            continue
        seen.add(r.event["id"])
        steps[r.event["subject"]].append(int(r.event["id"].rsplit("-", 1)[1]))
    assert all(s == sorted(s) for s in steps.values()), steps


async def test_redis_killed_and_restarted_then_sigterm_while_blocked(
    brokers: tuple[ApacheKafka, ApacheKafka], tmp_path: Path
) -> None:
    """Redis (block policy) killed: /readyz 503 naming the dedup store and nothing published unchecked; restarted:
    ready again, the held events out, duplicates of delivered ones still suppressed. Killed again: SIGTERM exits
    within the grace period, and the events it could not deliver come out after a restart: each exactly once."""
    src, snk = brokers
    tag = uuid.uuid4().hex[:6]
    raw, out, dead = src.create_topic(f"raw-{tag}", 2), snk.create_topic(f"out-{tag}", 2), f"dead-{tag}"
    redis = RedisServer(log_dir=tmp_path / "redis").start()
    cfg = fault_config(src, snk, raw, out, dead, {"store": "redis", "redis_url": redis.url(),
                                                  "store_timeout_seconds": 1, "on_store_error": "block"})
    b1, b2, b3 = batch("a", 40), batch("b", 40), batch("c", 20)
    try:
        with BridgeProcess(cfg, tmp_path, "first") as bridge:
            bridge.wait_ready()
            await send(src, raw, b1)
            assert len(await output(snk, out, 40)) == 40
            wait_metric(bridge, "bridge_inflight_events", lambda v: v == 0)
            redis.kill()
            await send(src, raw, b2 + b1[:10])  # new events, and copies of delivered ones
            body = wait_readyz(bridge, 503, "dedup store")
            assert body["dedup"]["ok"] is False and "error" in body["dedup"]
            assert bridge.metric_sum("bridge_dedup_store_up") == 0
            assert bridge.metric_sum("bridge_events_out_total") == 40  # nothing published unchecked
            redis.start()
            wait_readyz(bridge, 200)
            recs = await output(snk, out, 80)
            assert Counter(r.event["id"] for r in recs if r.event) == Counter(e["id"] for e in b1 + b2)
            assert bridge.metric_sum("bridge_duplicates_dropped_total") >= 10
            assert bridge.metric_sum("bridge_dedup_store_errors_total") >= 1
            wait_metric(bridge, "bridge_inflight_events", lambda v: v == 0)
            redis.kill()
            await send(src, raw, b3)
            wait_readyz(bridge, 503, "dedup store")
            sigterm_within_grace(bridge)
        redis.start()
        with BridgeProcess(cfg, tmp_path, "second") as bridge:
            bridge.wait_ready()
            recs = await output(snk, out, 100)
            assert sigterm_within_grace(bridge) < GRACE
    finally:
        redis.stop()
    counts = Counter(r.event["id"] for r in recs if r.event)
    assert counts == Counter(e["id"] for e in b1 + b2 + b3), "every event exactly once"
    assert_order(recs)


async def test_wrong_redis_password_blocks_and_is_reported_or_passes_when_configured(
    brokers: tuple[ApacheKafka, ApacheKafka], tmp_path: Path
) -> None:
    """A wrong Redis password: with ``block`` /readyz says 503 with the authentication error, nothing is
    published, SIGTERM exits within the grace period; with ``pass`` the bridge is ready, publishes every event
    unchecked and counts them in bridge_dedup_bypassed_total."""
    src, snk = brokers
    tag = uuid.uuid4().hex[:6]
    raw, out, dead = src.create_topic(f"raw-{tag}", 2), snk.create_topic(f"out-{tag}", 2), f"dead-{tag}"
    redis = RedisServer(password="right-password", log_dir=tmp_path / "redis").start()
    events = batch("p", 12)
    try:
        wrong = {"store": "redis", "redis_url": redis.url(password="wrong-password"), "store_timeout_seconds": 1}
        with BridgeProcess(fault_config(src, snk, raw, out, dead, {**wrong, "on_store_error": "block"}),
                           tmp_path, "block") as bridge:
            bridge.wait_http("/healthz")
            await send(src, raw, events)
            body = wait_readyz(bridge, 503, "dedup store")
            error = body["dedup"]["error"]
            assert "AuthenticationError" in error or "WRONGPASS" in error or "invalid" in error.lower(), error
            assert "wrong-password" not in str(body)
            assert bridge.metric_sum("bridge_events_out_total") == 0  # nothing published unchecked
            sigterm_within_grace(bridge)
        with BridgeProcess(fault_config(src, snk, raw, out, dead, {**wrong, "on_store_error": "pass"}),
                           tmp_path, "pass") as bridge:
            bridge.wait_ready()
            recs = await output(snk, out, 12)
            body = wait_readyz(bridge, 200)
            assert body["dedup"]["ok"] is False and body["dedup"]["on_store_error"] == "pass"
            assert bridge.metric_sum("bridge_dedup_bypassed_total") >= 12
            sigterm_within_grace(bridge)
    finally:
        redis.stop()
    assert sorted(r.event["id"] for r in recs if r.event) == sorted(e["id"] for e in events)


async def test_source_broker_paused(brokers: tuple[ApacheKafka, ApacheKafka], tmp_path: Path) -> None:
    """The source broker hangs (SIGSTOP) for 20 s: /readyz 503 naming the source broker while /healthz stays 200;
    resumed: ready again and every event (before and after) out exactly once, in order per subject."""
    src, snk = brokers
    tag = uuid.uuid4().hex[:6]
    raw, out, dead = src.create_topic(f"raw-{tag}", 2), snk.create_topic(f"out-{tag}", 2), f"dead-{tag}"
    before, after = batch("s", 30), batch("t", 30)
    with BridgeProcess(fault_config(src, snk, raw, out, dead, {}), tmp_path) as bridge:
        bridge.wait_ready()
        await send(src, raw, before)
        assert len(await output(snk, out, 30)) == 30
        src.pause()
        try:
            t0 = time.monotonic()
            wait_readyz(bridge, 503, "source kafka: broker unreachable", timeout=PAUSE - 5)
            assert bridge.get("/healthz")[0] == 200
            assert bridge.metrics()['bridge_broker_up{client="source kafka"}'] == 0
            await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - t0)))
        finally:
            src.resume()
        wait_readyz(bridge, 200, timeout=60)
        await send(src, raw, after)
        recs = await output(snk, out, 60)
        sigterm_within_grace(bridge)
    assert Counter(r.event["id"] for r in recs if r.event) == Counter(e["id"] for e in before + after)
    assert_order(recs)


async def test_sink_broker_paused_then_sigterm_while_it_hangs(
    brokers: tuple[ApacheKafka, ApacheKafka], tmp_path: Path
) -> None:
    """The sink broker hangs for 20 s with events pending: /readyz 503 (sink unreachable, pipeline stalled) and
    bridge_pipeline_stalled 1; resumed: ready again and nothing lost. Hung again: SIGTERM exits within the grace
    period, and the undelivered events come out after a restart."""
    src, snk = brokers
    tag = uuid.uuid4().hex[:6]
    raw, out, dead = src.create_topic(f"raw-{tag}", 2), snk.create_topic(f"out-{tag}", 2), f"dead-{tag}"
    b1, b2, b3 = batch("u", 20), batch("v", 30), batch("w", 20)
    cfg = fault_config(src, snk, raw, out, dead, {})
    with BridgeProcess(cfg, tmp_path, "first") as bridge:
        bridge.wait_ready()
        await send(src, raw, b1)
        assert len(await output(snk, out, 20)) == 20
        snk.pause()
        try:
            t0 = time.monotonic()
            await send(src, raw, b2)
            body = wait_readyz(bridge, 503, "pipeline stalled", timeout=PAUSE - 5)
            assert body["stalled"] is True and not body["sink"]
            assert any(r.startswith("sink: broker unreachable") for r in body["reasons"]), body
            metrics = bridge.metrics()
            assert metrics["bridge_pipeline_stalled"] == 1 and metrics["bridge_seconds_since_progress"] >= 3
            await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - t0)))
        finally:
            snk.resume()
        wait_readyz(bridge, 200, timeout=60)
        recs = await output(snk, out, 50)
        assert {r.event["id"] for r in recs if r.event} == {e["id"] for e in b1 + b2}
        assert bridge.metrics()["bridge_pipeline_stalled"] == 0
        snk.pause()
        try:
            await send(src, raw, b3)
            wait_readyz(bridge, 503, "pipeline stalled", timeout=15)
            sigterm_within_grace(bridge)
        finally:
            snk.resume()
    with BridgeProcess(cfg, tmp_path, "second") as bridge:
        bridge.wait_ready()
        recs = await output(snk, out, 70)
        sigterm_within_grace(bridge)
    ids = Counter(r.event["id"] for r in recs if r.event)
    assert set(ids) == {e["id"] for e in b1 + b2 + b3}, "nothing lost"
    assert_order(recs)
