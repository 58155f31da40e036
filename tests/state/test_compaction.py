"""Kafka compacts the state topic to one record per subject, and ``bridge state`` shows the same table before
and after: a private Apache Kafka whose log cleaner wakes every 100 ms (``log.cleaner.backoff.ms``; 15 s by
default), a state topic the bridge creates with ``state.topic_config`` settings that make a segment cleanable
within seconds.

Kafka compacts only rolled segments, never the active one, and a segment rolls when a record arrives after
``segment.ms``: the transitions are written, then, past ``segment.ms``, one new subject per partition (as a
running bridge keeps writing), which rolls every partition. ``min.compaction.lag.ms`` keeps the cleaner off until
the test has read the topic as written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from bridge.kafka_common import KafkaClientSettings
from bridge.testing.events import azureml_run_event
from bridge.tools.topic_range import TopicRange
from testbed.apache_kafka import ApacheKafka
from tests.state.helpers import batch, bridge_cli, job_event, write_state

PARTITIONS = 2
SEGMENT_MS = 500
HOLD_MS = 8000
"""min.compaction.lag.ms: the time the test has to read the topic as written."""
COMPACTED_WITHIN = 60.0
JOB_STEPS = [("InProgress", "Starting"), ("InProgress", "Downloading"), ("InProgress", "Training"),
             ("InProgress", "Uploading"), ("Completed", "Completed")]
RUN_STEPS = ["NotStarted", "Running", "Failed"]

pytestmark = pytest.mark.broker  # a broker of its own


@pytest.fixture(scope="module")
def compacting_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """A private broker whose log cleaner looks for work every 100 ms."""
    with ApacheKafka(log_dir=tmp_path_factory.mktemp("kafka-compaction"),
                     properties={"log.cleaner.backoff.ms": 100}) as server:
        yield server


def transitions(jobs: int, runs: int) -> list[list[dict[str, Any]]]:
    """Round k: the k-th lifecycle step of every SageMaker job and Azure ML run (a minute apart)."""
    rounds: list[list[dict[str, Any]]] = []
    for k in range(max(len(JOB_STEPS), len(RUN_STEPS))):
        events = [job_event(f"j{j}-{k}", f"job-{j}", 60 * k + j, *JOB_STEPS[k])
                  for j in range(jobs) if k < len(JOB_STEPS)]
        events += [azureml_run_event(f"r{r}-{k}", f"run-{r}", 60 * k + r, RUN_STEPS[k])
                   for r in range(runs) if k < len(RUN_STEPS)]
        rounds.append(events)
    return rounds


def one_new_job_per_partition(second: int) -> list[dict[str, Any]]:
    """A first event of new jobs whose subjects land on every partition (the sink's murmur2 partitioner)."""
    partitioner, partitions = DefaultPartitioner(), list(range(PARTITIONS))
    found: dict[int, dict[str, Any]] = {}
    i = 0
    while len(found) < PARTITIONS:
        job = f"late-job-{i}"
        found.setdefault(partitioner(f"training-job/{job}".encode(), partitions, partitions),
                         job_event(f"late-{i}", job, second))
        i += 1
    return list(found.values())


async def records_per_subject(bootstrap: str, topic: str) -> Counter[str]:
    """How many records each key (subject) has on the topic, read from the beginning."""
    counts: Counter[str] = Counter()
    async with TopicRange(KafkaClientSettings(bootstrap_servers=bootstrap), topic) as reader:
        async for chunk in reader.chunks():
            counts.update(r.key.decode() for r in chunk if r.key is not None)
    return counts


def state_table(bootstrap: str, topic: str) -> tuple[list[list[str]], str]:
    """``bridge state`` as rows without the AGE column (it moves with the clock), and its footer."""
    res = bridge_cli("state", "--bootstrap-servers", bootstrap, "--topic", topic)
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.strip().splitlines()]
    assert rows[0][-1] == "AGE"
    return [row[:-1] for row in rows], res.stderr.strip()


async def test_state_topic_is_compacted_to_one_record_per_subject_and_bridge_state_is_unchanged(
    compacting_kafka: ApacheKafka,
) -> None:
    """Many transitions per subject written by the bridge are compacted by Kafka's log cleaner to the latest
    record per subject, and ``bridge state`` prints the same table before and after."""
    bootstrap, topic = compacting_kafka.bootstrap, f"ml.state.{uuid.uuid4().hex[:8]}"
    data = {"reorder": {"max_delay_ms": 0},
            "routes": [{"name": "failed", "topic": f"ml.failed.{uuid.uuid4().hex[:8]}",
                        "filters": [{"pattern": {"status": ["failed"]}}]}],
            "state": {"topic": topic, "partitions": PARTITIONS,
                      "topic_config": {"segment.ms": SEGMENT_MS, "min.cleanable.dirty.ratio": 0.01,
                                       "min.compaction.lag.ms": HOLD_MS}},
            "sink": {"type": "kafka", "bootstrap_servers": bootstrap}}
    rounds = transitions(jobs=30, runs=10)
    first_write = time.monotonic()
    assert await write_state(data, *(batch(*events, source=f"round-{k}") for k, events in enumerate(rounds))) \
        == "created"
    await asyncio.sleep(SEGMENT_MS / 1000 + 0.2)
    rollers = one_new_job_per_partition(3600)
    assert await write_state(data, batch(*rollers, source="roll")) == "compacted"
    written = sum(len(events) for events in rounds) + len(rollers)

    before = await records_per_subject(bootstrap, topic)
    table_before, footer_before = await asyncio.to_thread(state_table, bootstrap, topic)
    read_in = time.monotonic() - first_write
    assert read_in < HOLD_MS / 1000, f"reading the topic as written took {read_in:.1f} s: raise HOLD_MS"
    subjects = 30 + 10 + len(rollers)
    assert (len(before), sum(before.values()), max(before.values())) == (subjects, written, len(JOB_STEPS))
    assert len(table_before) == 1 + subjects and footer_before == f"{subjects} of {subjects} subjects on {topic}"

    deadline = time.monotonic() + HOLD_MS / 1000 + COMPACTED_WITHIN
    after = before
    while max(after.values()) > 1:
        assert time.monotonic() < deadline, (
            f"the log cleaner did not compact {topic} within {COMPACTED_WITHIN:g} s after the hold: still "
            f"{sum(after.values())} records for {len(after)} subjects, up to {max(after.values())} per subject")
        await asyncio.sleep(0.5)
        after = await records_per_subject(bootstrap, topic)
    compacted_in = time.monotonic() - first_write
    print(f"state topic {topic}: {written} records for {subjects} subjects before, {sum(after.values())} after "
          f"compaction, {compacted_in:.1f} s after the first write (hold {HOLD_MS / 1000:g} s)")
    assert set(after) == set(before) and sum(after.values()) == subjects
    assert await asyncio.to_thread(state_table, bootstrap, topic) == (table_before, footer_before)
