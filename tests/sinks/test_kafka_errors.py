"""The Kafka sink's error classes (the table in docs/design.md, "Delivery") and what each does on Apache Kafka: a
batch the broker answers with an error that aiokafka will not retry (``UnknownError``, as a broker restarting with
its topic recreated answers) is published again through a new producer, in order, with nothing lost or
dead-lettered; a permanent one is isolated."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors as ak
from aiokafka.producer.sender import SendProduceReqHandler

from bridge.model import PublishError
from bridge.pipeline.core import Pipeline
from bridge.pipeline.router import Route, Router
from bridge.sinks import kafka_errors
from bridge.sinks.kafka import KafkaPublishError, KafkaSink, KafkaSinkConfig
from bridge.sinks.kafka_errors import is_permanent
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import InMemorySource
from testbed.kafka import OutRecord, collect

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"


def table_rows() -> dict[str, list[str]]:
    """The error-class table of docs/design.md: class name -> the exception names in its row."""
    text = DESIGN.read_text()
    section = text[text.index("### Error classes at the sink"):]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("### ") or line.startswith("## "):
            break
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().startswith("**"):
            rows[cells[1].strip().strip("*")] = re.findall(r"`([A-Z]\w+)`", cells[2])
    return rows


def exception(name: str) -> BaseException:
    cls = getattr(kafka_errors, name, None) or getattr(ak, name)
    exc: BaseException = cls()
    return exc


def test_each_exception_in_the_docs_table_is_classified_as_its_row_says() -> None:
    """Every aiokafka exception named in the docs' table is permanent exactly in the permanent row; the first row's
    are retried by aiokafka itself (``retriable``), the second row's are not and reach the sink."""
    rows = table_rows()
    assert set(rows) == {"transient, retried by the producer", "transient, reaching the sink", "permanent"}, rows
    for row, names in rows.items():
        assert names, row
        for name in names:
            exc = exception(name)
            assert is_permanent(exc) is (row == "permanent"), (row, name)
            if row == "transient, retried by the producer":
                assert getattr(exc, "retriable", False) is True, name
    assert set(rows["permanent"]) >= {c.__name__ for c in kafka_errors.PERMANENT}
    assert is_permanent(ValueError("anything unforeseen")) is False  # held and retried, never dead-lettered


def test_broker_codes_aiokafka_lacks_get_their_class_not_unknown_error() -> None:
    """INVALID_RECORD (87) is permanent instead of an UnknownError, and stale-metadata codes are retriable."""
    assert ak.for_code(87) is kafka_errors.InvalidRecordError and is_permanent(ak.for_code(87)())
    assert ak.for_code(100) is kafka_errors.UnknownTopicIdError and ak.for_code(100).retriable
    assert ak.for_code(-1) is ak.UnknownError and not is_permanent(ak.UnknownError())


def test_a_group_error_is_permanent_when_one_batch_error_is() -> None:
    """One permanent batch error makes the group's error permanent (its records are isolated one by one, where the
    transient ones are retried)."""
    assert isinstance(KafkaPublishError("x", [ak.UnknownError()]), PublishError)
    assert KafkaPublishError("x", [ak.UnknownError(), ak.KafkaTimeoutError()]).permanent is False
    assert KafkaPublishError("x", [ak.UnknownError(), ak.MessageSizeTooLargeError()]).permanent is True
    assert KafkaPublishError("x", [], permanent=True).permanent is True


@pytest.fixture
def broker_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[int]]]:
    """``broker_answers(error, requests=range(a, b), written=False)``: produce requests number a..b-1 of this
    process get ``error`` for every batch, as a broker answers them: not written (``written=False``: the sequence
    numbers then have a gap, which the real broker answers with OutOfOrderSequenceNumber for what follows) or
    written and answered with an error all the same. Returns the list of the failed batches' record counts."""
    original = SendProduceReqHandler.do
    failed: list[int] = []

    def arm(error: type[ak.KafkaError], requests: range, written: bool = False) -> list[int]:
        seen = 0

        async def do(self: Any, node_id: int) -> None:
            nonlocal seen
            seen += 1
            if seen - 1 not in requests:
                return await original(self, node_id)  # type: ignore[no-any-return]
            if written:
                await self._client.send(node_id, self.create_request())
            for batch in self._batches.values():
                failed.append(batch.record_count)
                batch.failure(exception=error())
            return None

        monkeypatch.setattr(SendProduceReqHandler, "do", do)
        return failed

    yield arm


def stream(n: int, subjects: int) -> list[dict[str, Any]]:
    return [sagemaker_training_event(f"s{i % subjects}-{i // subjects}", f"job{i % subjects}", 10 + i // subjects)
            for i in range(n)]


async def through_kafka(bootstrap: str, topic: str, dead: str, events: list[dict[str, Any]],
                        depth: int) -> tuple[Pipeline, KafkaSink, InMemorySource]:
    sink = KafkaSink(KafkaSinkConfig(bootstrap_servers=bootstrap, max_batch_bytes=8 * 1024))
    await sink.start()
    try:
        pipeline = Pipeline(Router([Route("all", topic)]), sink, deadletter_topic=dead, delivery_depth=depth)
        src = InMemorySource(events, batch_size=50)
        src.close_input()
        async for batch in src.batches():
            await pipeline.submit(batch)
        await pipeline.flush()
        await pipeline.close()
    finally:
        await sink.stop()
    return pipeline, sink, src


def figures(events: list[dict[str, Any]], recs: list[OutRecord]) -> tuple[int, int, int]:
    """(lost, duplicates, inversions): per partition in offset order, first copies whose sequence goes back."""
    ids = Counter(r.event["id"] for r in recs if r.event)
    lost = sum(1 for e in events if e["id"] not in ids)
    highest: dict[str, int] = {}
    seen: set[str] = set()
    inversions = 0
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        assert r.event is not None
        if r.event["id"] in seen:
            continue
        seen.add(r.event["id"])
        subject, seq = r.event["id"].split("-")[0], int(r.event["id"].split("-")[1])
        inversions += seq < highest.get(subject, -1)
        highest[subject] = max(seq, highest.get(subject, -1))
    return lost, sum(c - 1 for c in ids.values()), inversions


@pytest.mark.parametrize("depth", [1, 3])
async def test_unknown_error_from_the_broker_is_retried_through_a_new_producer_in_order(
    depth: int, kafka_bootstrap: str, kafka_topic: Callable[..., str], broker_answers: Callable[..., list[int]]
) -> None:
    """Three produce requests mid-stream answered UnknownError (not written; the broker then answers the next
    batches OutOfOrderSequenceNumber): the producer is replaced, every event is out exactly once, no subject out of
    order on any partition, nothing dead-lettered, each unacknowledged record counted as a publish error."""
    topic, dead = kafka_topic("unknown-out", 3), kafka_topic("unknown-dead", 1)
    events = stream(3000, 40)
    failed = broker_answers(ak.UnknownError, range(10, 13))
    pipeline, sink, src = await through_kafka(kafka_bootstrap, topic, dead, events, depth)
    recs = await collect(kafka_bootstrap, [topic, dead], until=len(events), timeout=30, settle=1.0,
                         dead_topics=[dead])
    assert failed, "no request was failed: the test proves nothing"
    assert sink.producer_replacements >= 1
    assert [r for r in recs if r.topic == dead] == []
    assert figures(events, [r for r in recs if r.topic == topic]) == (0, 0, 0)
    assert src.all_acked_once
    errors = pipeline.metrics.registry.get_sample_value("bridge_publish_errors_total") or 0
    assert errors >= sum(failed), (errors, failed)


async def test_a_batch_written_but_answered_with_an_error_comes_out_twice_and_in_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], broker_answers: Callable[..., list[int]]
) -> None:
    """A produce request the broker wrote but answered UnknownError: at least once allows its records twice (a new
    producer cannot be recognised as the old one), and what followed them on their partition in that group (re-sent
    in order); nothing is lost and the first copies keep every subject's order."""
    topic, dead = kafka_topic("written-out", 3), kafka_topic("written-dead", 1)
    events = stream(1500, 20)
    failed = broker_answers(ak.UnknownError, range(6, 7), written=True)
    await through_kafka(kafka_bootstrap, topic, dead, events, 1)
    recs = await collect(kafka_bootstrap, [topic], until=len(events) + sum(failed), timeout=30, settle=1.0)
    lost, duplicates, inversions = figures(events, recs)
    assert failed and (lost, inversions) == (0, 0)
    assert duplicates >= sum(failed), (duplicates, failed)


async def test_a_permanent_refusal_is_isolated_and_only_what_fails_again_is_dead_lettered(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], broker_answers: Callable[..., list[int]]
) -> None:
    """A request refused with TopicAuthorizationFailedError once: its records are published again one by one
    (they pass now), nothing is dead-lettered or lost, and no record the broker acknowledged is published twice."""
    topic, dead = kafka_topic("auth-out", 3), kafka_topic("auth-dead", 1)
    events = stream(600, 12)
    failed = broker_answers(ak.TopicAuthorizationFailedError, range(4, 5))
    pipeline, _, src = await through_kafka(kafka_bootstrap, topic, dead, events, 1)
    recs = await collect(kafka_bootstrap, [topic, dead], until=len(events), timeout=30, settle=1.0,
                         dead_topics=[dead])
    assert failed and [r for r in recs if r.topic == dead] == []
    assert figures(events, [r for r in recs if r.topic == topic]) == (0, 0, 0)
    assert src.all_acked_once
    assert pipeline.metrics.registry.get_sample_value("bridge_deadlettered_total",
                                                      {"kind": "unpublishable"}) in (None, 0)
