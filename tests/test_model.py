"""The contract between stages (bridge/model.py): every source and sink the bridge ships implements all of it."""

from __future__ import annotations

import io

import pytest

from bridge.model import PublishError, Sink, Source
from bridge.sinks.jsonl import JsonlSink
from bridge.sinks.kafka import KafkaPublishError, KafkaSink, KafkaSinkConfig
from bridge.sources.eventhubs import EventHubsSource, EventHubsSourceConfig
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from bridge.sources.sqs import SqsSource, SqsSourceConfig
from bridge.testing import CapturingSink, InMemorySource

CONN = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=hub"


def sources() -> list[Source]:
    return [
        KafkaSource(KafkaSourceConfig()),
        SqsSource(SqsSourceConfig(queue_url="http://127.0.0.1:1/000000000000/q")),
        EventHubsSource(EventHubsSourceConfig(type="eventhubs", connection_string=CONN)),  # type: ignore[arg-type]
        InMemorySource(),
    ]


def sinks() -> list[Sink]:
    return [KafkaSink(KafkaSinkConfig()), CapturingSink(), JsonlSink(io.BytesIO())]


@pytest.mark.parametrize("source", sources(), ids=lambda s: type(s).__name__)
def test_every_source_has_readiness_lag_and_probe_and_is_not_ready_before_start(source: Source) -> None:
    """Each shipped source implements the whole Source protocol; before start it is not ready, reports no lag
    for any broker partition, and has no broker check to run."""
    assert isinstance(source, Source)
    assert source.ready is False
    assert all(value == 0 for value in source.lag().values())
    assert source.probe() is None


@pytest.mark.parametrize("sink", sinks(), ids=lambda s: type(s).__name__)
def test_every_sink_has_readiness_probe_and_encoder(sink: Sink) -> None:
    """Each shipped sink implements the whole Sink protocol; a Kafka sink is not ready (and has no probe) before
    start."""
    assert isinstance(sink, Sink)
    assert sink.encoder is not None
    if isinstance(sink, KafkaSink | CapturingSink):
        assert sink.ready is False and sink.probe() is None


def test_kafka_publish_errors_are_publish_errors_permanent_only_when_no_retry_can_help() -> None:
    """The Kafka sink's failures are PublishErrors: permanent when a broker error is one no retry can cure
    (bridge.sinks.kafka_errors), transient otherwise, even where aiokafka says it will not retry."""
    from aiokafka.errors import MessageSizeTooLargeError, UnknownError

    assert isinstance(KafkaPublishError("x", [UnknownError()]), PublishError)
    assert KafkaPublishError("x", [UnknownError()]).permanent is False
    assert KafkaPublishError("x", [MessageSizeTooLargeError()]).permanent is True
    assert KafkaPublishError("x", [], permanent=True).permanent is True
