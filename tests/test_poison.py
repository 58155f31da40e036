"""A poison message (an exception escaping normalization) never stops the daemon: on the real Kafka-protocol
broker it is dead-lettered with the exception's type and text, the messages around it are published, the group's
commit moves past it, and the daemon keeps consuming until it is told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.testing.events import sagemaker_training_event
from testbed.kafka import collect, committed_and_end, produce_fast
from testbed.waiting import wait_for
from tests.poison import poison_normalizer


def _body(event_id: str, job: str, second: int) -> bytes:
    return orjson.dumps(sagemaker_training_event(event_id, job, second, "Completed"))


async def test_a_poison_message_is_dead_lettered_and_the_daemon_keeps_consuming(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two messages whose normalization raises, among good ones, in two waves: every good event is published,
    each poison message becomes one dead letter (kind error, reason with the exception, its source position),
    every offset is committed, and the daemon is still running after the first wave and exits 0 on stop."""
    raw, out, dead = kafka_topic("poison-raw", 1), kafka_topic("poison-out", 1), kafka_topic("poison-dead", 1)
    poison_normalizer(monkeypatch, b"POISON", RuntimeError("boom while normalizing"))
    group = f"bridge-{raw}"
    cfg = parse_config({
        "http": {"host": "127.0.0.1", "port": 0},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": kafka_bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "reorder": {"max_delay_ms": 100},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        "shutdown": {"grace_seconds": 10},
    })
    daemon = Daemon(cfg)
    runner = asyncio.create_task(daemon.run())
    try:
        first = [_body("e0", "j0", 1), _body("p0", "POISON0", 1), _body("e1", "j1", 1)]
        second = [_body("e2", "j2", 1), _body("p1", "POISON1", 1), _body("e3", "j3", 1)]

        async def committed(total: int) -> bool:
            assert not runner.done(), "the daemon ended while consuming"
            offsets, _ = await committed_and_end(kafka_bootstrap, group, raw)
            return sum(offsets.values()) >= total

        await produce_fast(kafka_bootstrap, raw, first)
        await wait_for(lambda: committed(len(first)), within=60, every=0.5, what="the first wave committed")
        await produce_fast(kafka_bootstrap, raw, second)
        await wait_for(lambda: committed(len(first) + len(second)), within=60, every=0.5,
                       what="the second wave committed")
        errors = daemon.metrics.registry.get_sample_value("bridge_deadlettered_total", {"kind": "error"})
    finally:
        daemon.request_stop()
        code = await asyncio.wait_for(runner, 30)
    assert code == 0
    assert errors == 2
    recs = await collect(kafka_bootstrap, [out, dead], until=6, timeout=30, dead_topics=[dead])
    assert sorted(r.event["id"] for r in recs if r.topic == out and r.event) == ["e0", "e1", "e2", "e3"]
    dead_letters = sorted((r for r in recs if r.topic == dead), key=lambda r: r.headers["dlq_position"])
    assert [r.headers["dlq_position"] for r in dead_letters] == [f"{raw}/0@1".encode(), f"{raw}/0@4".encode()]
    for r in dead_letters:
        assert r.headers["dlq_reason"] == b"normalize failed: RuntimeError: boom while normalizing"
        assert b"POISON" in (r.value or b"")
