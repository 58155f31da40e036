"""Zombie fencing of exactly-once delivery: of two `bridge run` replicas, one is frozen (SIGSTOP) past its session
timeout while it holds an open transaction; its partitions move to the other, whose producers (the same
transactional ids, one per input partition) fence it; resumed, the zombie's commit is refused, it stops consuming
those partitions instead of crash-looping, and the output holds every event exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.kafka import produce_fast
from testbed.process import BridgeProcess
from testbed.waiting import wait_for
from tests.eos.stream import drained, ml_stream, read_committed, tally
from tests.eos.test_crash import eos_config

N_EVENTS = 20_000


async def test_a_frozen_replica_is_fenced_and_the_output_holds_no_duplicate(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Replica A is SIGSTOPped mid-transaction for 12 s (session timeout 6 s), B takes its partitions and fences
    its producers; SIGCONT: A's commit fails as fenced (logged, counted), A pauses those partitions and lives on,
    and every event is on the output exactly once, none lost."""
    raw, out, failed = kafka_topic("fence-raw", 4), kafka_topic("fence-out", 4), kafka_topic("fence-failed", 1)
    dead = kafka_topic("fence-dead", 1)
    group = f"fence-{uuid.uuid4().hex[:8]}"
    cfg = eos_config(kafka_bootstrap, raw, out, failed, dead, group, "memory", redis_url)
    cfg["delivery"].update(transaction_max_ms=3000, transaction_max_records=1_000_000)  # long transactions: the
    # freeze lands inside one
    stream = ml_stream(N_EVENTS, subjects=400, bad_every=5000)
    a = BridgeProcess(cfg, tmp_path, "a").start()
    b = BridgeProcess(cfg, tmp_path, "b").start()
    frozen = False
    try:
        await asyncio.to_thread(a.wait_ready)
        await asyncio.to_thread(b.wait_ready)

        async def feed() -> None:
            msgs = stream.messages
            for i in range(0, len(msgs), 500):
                part = msgs[i : i + 500]
                await produce_fast(kafka_bootstrap, raw, [m for _, m in part], [k for k, _ in part])
                await asyncio.sleep(0.4)

        feeding = asyncio.ensure_future(feed())
        for p in (a, b):  # both process: each restored the state of its own partitions
            await wait_for(lambda p=p: "pipeline.rewound" in p.log_path.read_text() and p.metric_sum(
                "bridge_events_out_total") > 0, within=60, every=0.5)
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGSTOP)
        frozen = True
        await asyncio.sleep(12)  # past A's session timeout: the group gives A's partitions to B
        os.kill(a.proc.pid, signal.SIGCONT)
        frozen = False
        await wait_for(lambda: "eos.fenced" in a.log_path.read_text(), within=60, every=0.5,
                       what=lambda: f"A never found itself fenced:\n{a.log_tail()}")
        await feeding
        await drained(kafka_bootstrap, group, raw)
        fenced = a.metric_sum("bridge_transactions_fenced_total")
        a_alive = a.proc.poll() is None
        aborts = a.metric_sum('bridge_transactions_total{outcome="aborted"}')
        routed = await read_committed(kafka_bootstrap, [out, failed], len(stream.ids) + len(stream.failed))
    finally:
        for p in (a, b):
            if p.proc is not None and p.proc.poll() is None:
                if frozen and p is a:
                    os.kill(p.proc.pid, signal.SIGCONT)
                p.kill()
    everything = tally([r for r in routed if r.topic == out], stream.ids)
    summary = {"events": len(stream.ids), "copies_in_input": stream.duplicates, "fenced": fenced,
               "zombie_aborts": aborts, "zombie_alive": a_alive, "all": everything.as_dict()}
    with capsys.disabled():
        print(f"\nexactly-once fencing test: {json.dumps(summary)}")
    assert fenced >= 1 and a_alive
    assert aborts <= 3, "the zombie aborts again and again instead of pausing its lost partitions"
    assert "kafka.fenced_paused" in a.log_path.read_text()
    assert everything.lost == [] and everything.duplicates == 0 and everything.unexpected == 0, everything.as_dict()
    assert everything.inversions == 0, everything.as_dict()
