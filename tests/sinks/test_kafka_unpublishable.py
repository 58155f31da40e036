"""An event the broker cannot take (larger than the sink's batch limit) is dead-lettered on Kafka with the
reason, truncated, while the rest of the stream is published (Apache Kafka)."""

from __future__ import annotations

from collections.abc import Callable

from bridge.pipeline.core import Pipeline
from bridge.pipeline.router import Route, Router
from bridge.sinks.kafka import KafkaSink, KafkaSinkConfig
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import InMemorySource
from testbed.kafka import collect


async def test_oversized_event_goes_to_the_deadletter_topic_and_others_flow(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """A 200 KB event over an 80 KB request limit lands on the dead-letter topic (its CloudEvent JSON cut to fit,
    with the reason, its input's position, the original size and hash in headers), counted as one publish error;
    its neighbours reach the output topic and the batch is acked."""
    out, dead = kafka_topic("big-out", 1), kafka_topic("big-dead", 1)
    sink = KafkaSink(
        KafkaSinkConfig(bootstrap_servers=kafka_bootstrap, max_batch_bytes=64 * 1024, max_request_bytes=80 * 1024)
    )
    await sink.start()
    try:
        pipeline = Pipeline(Router([Route("all", out)]), sink, deadletter_topic=dead)
        big = sagemaker_training_event("big", "j", 1)
        big["detail"]["Blob"] = "x" * 200_000
        src = InMemorySource([sagemaker_training_event("a", "j", 0), big, sagemaker_training_event("b", "k", 2)])
        src.close_input()
        async for batch in src.batches():
            await pipeline.submit(batch)
        await pipeline.flush()
        await pipeline.close()
    finally:
        await sink.stop()
    assert src.all_acked_once
    recs = await collect(kafka_bootstrap, [out, dead], until=3, timeout=30, settle=0.5, dead_topics=[dead])
    assert sorted(r.event["id"] for r in recs if r.topic == out and r.event) == ["a", "b"]
    dl = [r for r in recs if r.topic == dead]
    assert len(dl) == 1 and b"exceeds max_request_bytes" in dl[0].headers["dlq_reason"]
    value, headers = dl[0].value or b"", dl[0].headers
    assert headers["ce_id"] == b"big" and headers["dlq_truncated"] == b"true"
    assert headers["dlq_position"] == b"memory@2"  # where its input was, like every other dead letter
    assert pipeline.metrics.registry.get_sample_value("bridge_publish_errors_total") == 1  # one record failed
    assert int(headers["dlq_size"]) > 200_000 and len(headers["dlq_sha256"]) == 64
    assert value.startswith(b'{"specversion":"1.0","id":"big"')
    assert len(value) + sum(len(k) + len(v) for k, v in headers.items()) < 80 * 1024
