"""`bridge run` end to end as a subprocess on the real Kafka-protocol broker: routing, metrics, readiness,
SIGTERM leaving nothing uncommitted."""

from __future__ import annotations

import random
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import collect, committed_and_end, produce
from testbed.process import BridgeProcess
from testbed.servers import RefusedPort


def daemon_config(bootstrap: str, raw: str, out_all: str, out_failed: str, dead: str, group: str) -> dict[str, Any]:
    return {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "dedup": {"enabled": True},
        "reorder": {"enabled": True, "max_delay_ms": 300},
        "routes": [
            {"name": "failed", "topic": out_failed,
             "filters": [{"pattern": {"type": ["ml.job.status_changed"], "status": ["failed"]}}]},
            {"name": "all", "topic": out_all},
        ],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        "shutdown": {"grace_seconds": 10},
    }


async def test_daemon_routes_dedups_reorders_counts_and_commits_everything_on_sigterm(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Events in (with duplicates, out of order, one invalid) come out routed, ordered per subject, each once;
    /metrics counters match; SIGTERM exits 0 with every input offset committed."""
    raw, out_all, out_failed, dead = (kafka_topic(n, p) for n, p in
                                      (("raw", 3), ("all", 2), ("failed", 1), ("dead", 1)))
    group = f"bridge-{raw}"
    events = []
    for job in range(20):
        for step in range(10):
            status = "Failed" if (step == 9 and job % 4 == 0) else ("Completed" if step == 9 else "InProgress")
            events.append(sagemaker_training_event(f"{job}-{step}", f"job{job}", 100 + step, status))
    rng = random.Random(3)
    shuffled = events[:]
    rng.shuffle(shuffled)
    dups = shuffled[:25]
    bodies = [orjson.dumps(e) for e in shuffled + dups] + [b"{not json"]
    with BridgeProcess(daemon_config(kafka_bootstrap, raw, out_all, out_failed, dead, group), tmp_path) as bridge:
        bridge.wait_ready()
        await produce(kafka_bootstrap, raw, bodies)
        recs = await collect(kafka_bootstrap, [out_all, out_failed, dead], until=200 + 5 + 1, timeout=60,
                             settle=1.5, dead_topics=[dead])
        metrics = bridge.metrics()
        assert bridge.terminate() == 0, bridge.log_tail()
    by_topic: dict[str, list[Any]] = defaultdict(list)
    for r in recs:
        by_topic[r.topic].append(r)
    ids = [r.event["id"] for r in by_topic[out_all]]
    assert sorted(ids) == sorted(e["id"] for e in events)  # every event, each exactly once
    assert sorted(r.event["id"] for r in by_topic[out_failed]) == sorted(f"{j}-9" for j in range(0, 20, 4))
    assert len(by_topic[dead]) == 1 and b"malformed JSON" in by_topic[dead][0].headers["dlq_reason"]
    per_subject: dict[str, list[int]] = defaultdict(list)
    for r in by_topic[out_all]:
        assert r.key == r.event["subject"]
        per_subject[r.key].append(int(r.event["id"].split("-")[1]))
    assert all(steps == sorted(steps) for steps in per_subject.values()), "per-subject order restored"
    assert metrics['bridge_events_out_total{route="all"}'] == 200
    assert metrics['bridge_events_out_total{route="failed"}'] == 5
    assert metrics['bridge_duplicates_dropped_total{source="kafka"}'] == 25
    assert metrics['bridge_deadlettered_total{kind="invalid"}'] == 1
    assert metrics['bridge_messages_in_total{source="kafka"}'] == len(bodies)
    lag = {k: v for k, v in metrics.items() if k.startswith("bridge_consumer_lag{") and 'source="kafka"' in k}
    assert lag and all(v == 0 for v in lag.values()), lag  # everything consumed: no lag left
    assert metrics['bridge_source_up{source="kafka"}'] == 1
    committed, _ = await committed_and_end(kafka_bootstrap, group, raw)
    # offsets start at 0 on every partition, so the committed offsets must add up to every message produced
    # (tansu's ListOffsets answers are not reliable enough to compare with end offsets)
    assert sum(committed.values()) == len(bodies)


async def test_readyz_is_503_while_the_broker_is_unreachable_and_sigterm_still_exits_0(tmp_path: Path) -> None:
    """With Kafka down, /healthz answers 200, /readyz 503 (retrying with backoff), and SIGTERM exits 0."""
    with RefusedPort() as dead_port:
        cfg = daemon_config(f"127.0.0.1:{dead_port}", "raw", "all", "failed", "dead", "g")
        with BridgeProcess(cfg, tmp_path) as bridge:
            bridge.wait_http("/healthz", 200)
            code, body = bridge.get("/readyz")
            assert code == 503 and orjson.loads(body)["ready"] is False
            assert bridge.proc is not None
            bridge.proc.send_signal(signal.SIGTERM)
            assert bridge.proc.wait(60) == 0


async def test_stop_while_still_connecting_logs_daemon_stopped(tmp_path: Path) -> None:
    """SIGTERM before the sink ever connected still ends with `daemon.stopped` logged and exit 0."""
    with RefusedPort() as dead:
        cfg = daemon_config(f"127.0.0.1:{dead}", "raw", "all", "failed", "dead", "g")
        with BridgeProcess(cfg, tmp_path) as bridge:
            bridge.wait_http("/healthz", 200)
            assert bridge.terminate() == 0
    events = [orjson.loads(line)["event"] for line in bridge.log_path.read_text().splitlines()]
    assert "daemon.stop_requested" in events
    assert events[-1] == "daemon.stopped", events
