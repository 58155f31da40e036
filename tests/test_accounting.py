"""Nothing is dropped silently: through `bridge run` on the real Kafka-protocol broker, a dead letter always fits
the broker (cut, with size, hash and position in headers) and the counters add up to the input exactly."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import collect, committed_and_end, produce_fast
from testbed.process import BridgeProcess
from testbed.waiting import ConditionNotReached, wait_for

TRUSTED, FOREIGN = "123456789012", "999999999999"


def config(bootstrap: str, raw: str, out: str, dead: str, group: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "reorder": {"max_delay_ms": 200},
        "routes": [{"name": "done", "topic": out,
                    "filters": [{"pattern": {"status": ["completed", "failed"]}}]}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        "shutdown": {"grace_seconds": 10},
    }
    cfg.update(extra)
    return cfg


async def wait_committed(bootstrap: str, group: str, topic: str, total: int, bridge: BridgeProcess) -> None:
    async def all_committed() -> bool:
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_tail()
        committed, _ = await committed_and_end(bootstrap, group, topic)
        return sum(committed.values()) >= total

    try:
        await wait_for(all_committed, within=90, every=0.5)
    except ConditionNotReached:
        committed, _ = await committed_and_end(bootstrap, group, topic)
        raise AssertionError(f"not every input offset committed: {committed}\n{bridge.log_tail()}") from None


async def test_a_dead_letter_larger_than_the_broker_takes_is_cut_to_fit_never_dropped(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """2 MB of broken JSON (over the sink's 1 MB request limit) becomes a dead letter cut to fit, with its original
    size, SHA-256 and source position in headers; bridge_undeliverable_total stays 0 and the events behind it
    are published."""
    raw = kafka_topic("dl-raw", 1, config={"max.message.bytes": str(4 * 1024 * 1024)})  # takes the 2 MB input
    out, dead = kafka_topic("dl-out", 1), kafka_topic("dl-dead", 1)
    broken = b'{"id": "x", "detail": "' + b"z" * (2 * 1024 * 1024)
    bodies = [broken] + [orjson.dumps(sagemaker_training_event(f"e{i}", f"j{i}", i, "Completed")) for i in range(3)]
    await produce_fast(kafka_bootstrap, raw, bodies)
    group = f"bridge-{raw}"
    with BridgeProcess(config(kafka_bootstrap, raw, out, dead, group), tmp_path) as bridge:
        bridge.wait_ready()
        await wait_committed(kafka_bootstrap, group, raw, len(bodies), bridge)
        metrics = bridge.metrics()
        assert bridge.terminate() == 0, bridge.log_tail()
    recs = await collect(kafka_bootstrap, [out, dead], until=4, timeout=30, dead_topics=[dead])
    assert sorted(r.event["id"] for r in recs if r.topic == out and r.event) == ["e0", "e1", "e2"]
    (dl,) = [r for r in recs if r.topic == dead]
    h = dl.headers
    assert h["dlq_reason"].startswith(b"malformed JSON")
    assert h["dlq_truncated"] == b"true" and int(h["dlq_size"]) == len(broken)
    assert h["dlq_sha256"] == hashlib.sha256(broken).hexdigest().encode()
    assert h["dlq_position"] == f"{raw}/0@0".encode()
    value = dl.value or b""
    assert broken.startswith(value) and 900_000 < len(value) < 1024 * 1024
    assert metrics["bridge_undeliverable_total"] == 0
    assert metrics['bridge_deadlettered_total{kind="invalid"}'] == 1


async def test_counters_add_up_to_the_input_and_to_the_topics(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Mixed input (published, duplicate, unrouted, invalid, untrusted, unpublishable): messages in = published
    + duplicates + unrouted + dead letters by kind, and each counter equals the records on its topic."""
    raw, out, dead = kafka_topic("acc-raw", 2), kafka_topic("acc-out", 2), kafka_topic("acc-dead", 1)
    bodies: list[bytes] = []
    for i in range(40):  # 40 published (terminal status)
        bodies.append(orjson.dumps(sagemaker_training_event(f"done{i}", f"job{i}", 10, "Completed")))
    bodies += bodies[:7]  # 7 duplicates
    for i in range(12):  # 12 unrouted (running)
        bodies.append(orjson.dumps(sagemaker_training_event(f"run{i}", f"job{i}", 5, "InProgress")))
    bodies += [b"{not json", b"[]", b'{"id": 1}']  # 3 invalid
    for i in range(4):  # 4 untrusted (another account)
        bodies.append(orjson.dumps(sagemaker_training_event(f"foreign{i}", f"x{i}", 10, "Failed", account=FOREIGN)))
    for i in range(2):  # 2 unpublishable (over the sink's 64 KiB limit)
        big = sagemaker_training_event(f"big{i}", f"big{i}", 10, "Failed")
        big["detail"]["Blob"] = "b" * 100_000
        bodies.append(orjson.dumps(big))
    group = f"bridge-{raw}"
    cfg = config(kafka_bootstrap, raw, out, dead, group, trust={"aws_accounts": [TRUSTED]})
    cfg["sink"]["max_request_bytes"] = 64 * 1024
    with BridgeProcess(cfg, tmp_path) as bridge:
        bridge.wait_ready()
        await produce_fast(kafka_bootstrap, raw, bodies)
        await wait_committed(kafka_bootstrap, group, raw, len(bodies), bridge)
        metrics = bridge.metrics()
        assert bridge.terminate() == 0, bridge.log_tail()
    recs = await collect(kafka_bootstrap, [out, dead], until=40 + 9, timeout=30, settle=1.5, dead_topics=[dead])
    on_out = [r for r in recs if r.topic == out]
    on_dead = [r for r in recs if r.topic == dead]

    def m(name: str) -> float:
        return metrics[name]

    kinds = {k: m(f'bridge_deadlettered_total{{kind="{k}"}}') for k in ("invalid", "untrusted", "unpublishable",
                                                                         "error", "late")}
    assert kinds == {"invalid": 3, "untrusted": 4, "unpublishable": 2, "error": 0, "late": 0}
    published = m('bridge_events_out_total{route="done"}')
    duplicates = m('bridge_duplicates_dropped_total{source="kafka"}')
    unrouted = m('bridge_events_unrouted_total{source="kafka"}')
    assert (published, duplicates, unrouted) == (40, 7, 12)
    assert m('bridge_messages_in_total{source="kafka"}') == len(bodies) == published + duplicates + unrouted + sum(
        kinds.values())
    assert len(on_out) == published and len({r.event["id"] for r in on_out if r.event}) == 40
    assert len(on_dead) == sum(kinds.values())
    assert m("bridge_undeliverable_total") == 0
