"""CloudEvents in Kafka binary mode (attributes in ce_* headers, data in the value) read by the Kafka source
from the real broker normalize into the canonical envelope."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson

from bridge.normalize import normalize_all
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from testbed.kafka import produce


async def test_binary_mode_record_from_kafka_normalizes(kafka_bootstrap: str, kafka_topic: Callable[..., str]) -> None:
    """A binary-mode Azure ML CloudEvent produced to Kafka comes out of the source with its ce_* headers and
    normalizes to the canonical type, subject, id and data."""
    topic = kafka_topic("ce-binary", 1)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"bin-1"),
        ("ce_source", b"/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w"),
        ("ce_type", b"Microsoft.MachineLearningServices.RunStatusChanged"),
        ("ce_subject", b"experiments/e/runs/r1"),
        ("ce_time", b"2024-02-01T10:00:00.1234567Z"),
        ("content-type", b"application/json"),
    ]
    await produce(kafka_bootstrap, topic, [orjson.dumps({"runStatus": "Failed"})], headers=[headers])
    source = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=kafka_bootstrap,
            topics=[topic],
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
    )
    await source.start()
    try:
        batch = await asyncio.wait_for(anext(source.batches()), 30)
    finally:
        await source.stop()
    events, errors = normalize_all(batch.messages[0])
    assert errors == []
    ev = events[0]
    assert (ev.id, ev.type, ev.subject, ev.status, ev.platform) == (
        "bin-1",
        "ml.job.status_changed",
        "experiments/e/runs/r1",
        "failed",
        "azureml",
    )
    assert ev.data == {"runStatus": "Failed"} and ev.time == "2024-02-01T10:00:00.123456Z"
