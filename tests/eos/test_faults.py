"""Exactly-once delivery on a bad day: a poison message dead-lettered inside its neighbours' transaction, an
aborted upstream transaction never bridged (read_committed), and the broker killed mid-transaction: aborted,
resumed, nothing lost and nothing twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.testing.events import sagemaker_training_event
from testbed.apache_kafka import ApacheKafka
from testbed.kafka import committed_and_end, produce_fast
from testbed.process import BridgeProcess
from testbed.waiting import wait_for
from tests.eos.stream import drained, ml_stream, read_committed, tally
from tests.eos.test_crash import eos_config
from tests.poison import poison_normalizer


def _body(event_id: str, job: str, second: int) -> bytes:
    return orjson.dumps(sagemaker_training_event(event_id, job, second, "Completed"))


def _in_process(bootstrap: str, raw: str, out: str, dead: str, group: str, **reorder: Any) -> Daemon:
    return Daemon(parse_config({
        "http": {"host": "127.0.0.1", "port": 0},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "reorder": reorder or {"enabled": False},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        "delivery": {"guarantee": "exactly_once", "transaction_max_ms": 2000},
        "shutdown": {"grace_seconds": 10},
    }))


async def test_a_poison_message_is_dead_lettered_inside_its_neighbours_transaction(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message whose normalization raises, between two good ones in one poll: one transaction commits the two
    events, the dead letter and the offset past all three; nothing is aborted."""
    raw, out, dead = kafka_topic("eos-poison-raw", 1), kafka_topic("eos-poison-out", 1), kafka_topic("eos-pd", 1)
    poison_normalizer(monkeypatch, b"POISON", RuntimeError("boom while normalizing"))
    group = f"eos-poison-{uuid.uuid4().hex[:6]}"
    daemon = _in_process(kafka_bootstrap, raw, out, dead, group)
    runner = asyncio.create_task(daemon.run())
    try:
        eos = daemon.eos
        assert eos is not None
        await wait_for(lambda: eos.restored and any(s.assignment() for s in eos.sources.values()), within=60,
                       every=0.2, what="the bridge restored its state and consumes")
        await produce_fast(kafka_bootstrap, raw, [_body("e0", "j0", 1), _body("p0", "POISON0", 1),
                                                  _body("e1", "j1", 1)])

        async def committed() -> bool:
            offsets, _ = await committed_and_end(kafka_bootstrap, group, raw)
            return sum(offsets.values()) >= 3

        await wait_for(committed, within=60, every=0.3, what="the three offsets committed")
        value = daemon.metrics.registry.get_sample_value
        transactions = value("bridge_transactions_total", {"outcome": "committed"})
        aborted = value("bridge_transactions_total", {"outcome": "aborted"})
        sizes = value("bridge_transaction_records_sum"), value("bridge_transaction_records_count")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 30) == 0
    routed = await read_committed(kafka_bootstrap, [out, dead], 3, timeout=20)
    assert sorted(dict(r.headers or [])["ce_id"] for r in routed if r.topic == out) == [b"e0", b"e1"]
    [letter] = [r for r in routed if r.topic == dead]
    assert b"boom while normalizing" in dict(letter.headers or [])["dlq_reason"]
    assert aborted == 0 and transactions is not None and transactions >= 1
    assert sizes == (3.0, 1.0), f"records per transaction (sum, count): {sizes}: the three were not committed together"


async def test_an_aborted_upstream_transaction_is_never_bridged(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """Upstream, one transaction commits two events and another aborts two: the bridge reads read_committed and
    publishes the committed two only."""
    raw, out, dead = kafka_topic("eos-upstream-raw", 1), kafka_topic("eos-upstream-out", 1), kafka_topic("eud", 1)
    upstream = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"up-{uuid.uuid4().hex[:6]}")
    await upstream.start()
    try:
        async with upstream.transaction():
            await upstream.send(raw, _body("kept-1", "j1", 1))
            await upstream.send(raw, _body("kept-2", "j2", 1))
        await upstream.begin_transaction()
        await upstream.send(raw, _body("aborted-1", "j3", 1))
        await (await upstream.send(raw, _body("aborted-2", "j4", 1)))
        await upstream.abort_transaction()
        async with upstream.transaction():
            await upstream.send(raw, _body("kept-3", "j5", 1))
    finally:
        await upstream.stop()
    group = f"eos-up-{uuid.uuid4().hex[:6]}"
    daemon = _in_process(kafka_bootstrap, raw, out, dead, group)
    runner = asyncio.create_task(daemon.run())
    try:
        async def past_the_last_event() -> bool:  # offset 6 is kept-3; 7 its transaction's commit marker
            offsets, _ = await committed_and_end(kafka_bootstrap, group, raw)
            return offsets.get(0, 0) >= 7

        await wait_for(past_the_last_event, within=60, every=0.3, what="the offset after kept-3 committed")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 30) == 0
    routed = await read_committed(kafka_bootstrap, [out], 3, timeout=20)
    assert sorted(dict(r.headers or [])["ce_id"] for r in routed) == [b"kept-1", b"kept-2", b"kept-3"]


async def test_the_broker_killed_mid_transaction_aborts_and_resumes_exactly_once(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker (source and sink) is SIGKILLed and restarted twice while 15,000 events flow with transactions
    open: each open transaction either completes once the broker is back (its coordinator kept it) or is aborted
    and rewound (the consumer group dropped the bridge meanwhile); either way every event is on the output exactly
    once, none lost, and the bridge lives on."""
    broker = ApacheKafka(log_dir=tmp_path / "kafka")
    await broker.astart()
    procs: list[BridgeProcess] = []
    try:
        raw, out, failed = broker.create_topic("raw", 3), broker.create_topic("out", 3), broker.create_topic("f", 1)
        dead = broker.create_topic("dead", 1)
        group = f"eos-restart-{uuid.uuid4().hex[:6]}"
        cfg = eos_config(broker.bootstrap, raw, out, failed, dead, group, "memory", redis_url)
        cfg["delivery"]["transaction_max_ms"] = 1000
        stream = ml_stream(15_000, subjects=300)
        procs.append(BridgeProcess(cfg, tmp_path / "bridge", "run").start())
        await asyncio.to_thread(procs[0].wait_ready)

        async def feed() -> None:
            msgs = stream.messages
            for i in range(0, len(msgs), 500):
                part = msgs[i : i + 500]
                while True:  # the producer of the test waits out the broker's restarts
                    try:
                        await produce_fast(broker.bootstrap, raw, [m for _, m in part], [k for k, _ in part])
                        break
                    except Exception:
                        await asyncio.sleep(0.5)
                await asyncio.sleep(0.3)

        feeding = asyncio.ensure_future(feed())
        published: list[float] = []
        for _ in range(2):
            before = procs[0].metric_sum("bridge_events_out_total")
            await wait_for(lambda b=before: procs[0].metric_sum("bridge_events_out_total") > b, within=60, every=0.3,
                           what="events published since the last restart")
            published.append(procs[0].metric_sum("bridge_events_out_total"))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.kill)
            await asyncio.sleep(1.0)
            await broker.astart()
        feeding_done_before_kills = feeding.done()
        await feeding
        await drained(broker.bootstrap, group, raw, within=180)
        aborted = procs[0].metric_sum('bridge_transactions_total{outcome="aborted"}')
        routed = await read_committed(broker.bootstrap, [out], len(stream.ids))
        assert procs[0].proc is not None and procs[0].proc.poll() is None, "the bridge died with the broker"
    finally:
        for p in procs:
            if p.proc is not None and p.proc.poll() is None:
                p.kill()
        await broker.astop()
    everything = tally(routed, stream.ids)
    with capsys.disabled():
        print(f"\nexactly-once broker restart test: "
              f"{json.dumps({'aborted': aborted, 'published_before_kills': published, **everything.as_dict()})}")
    assert not feeding_done_before_kills, "the stream ended before the kills: they did not land mid-stream"
    assert everything.lost == [] and everything.duplicates == 0 and everything.unexpected == 0, everything.as_dict()
    assert everything.inversions == 0, everything.as_dict()
