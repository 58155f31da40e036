"""``bridge state`` on the test broker: the state topic written by the pipeline, read back as a table (one row
per subject, newest first, filters), as JSON Lines, with a progress line on a terminal only."""

from __future__ import annotations

import asyncio
import os
import pty
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from bridge.testing.events import azureml_run_event
from tests.state.helpers import batch, bridge_cli, job_event, write_state


@pytest.fixture(scope="module")
def state_topic(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A state topic written by a pipeline from both clouds; yields (topic, config file)."""
    topic = f"ml.state.{uuid.uuid4().hex[:8]}"
    data = {"reorder": {"max_delay_ms": 0}, "state": {"topic": topic, "partitions": 2},
            "routes": [{"name": "failed", "topic": f"ml.failed.{uuid.uuid4().hex[:8]}",
                        "filters": [{"pattern": {"status": ["failed"]}}]}],
            "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap}}
    cfg_path = tmp_path_factory.mktemp("state") / "bridge.yaml"
    cfg_path.write_text(yaml.safe_dump(data))

    assert asyncio.run(write_state(
        data,
        batch(job_event("a1", "job-a", 10), job_event("b1", "job-b", 20),
              azureml_run_event("r1", "run-1", 15), azureml_run_event("r2", "run-2", 25)),
        batch(job_event("a2", "job-a", 40, "Failed", "Failed"),
              azureml_run_event("r3", "run-1", 50, "Failed"), job_event("b2", "job-b", 30)),
        batch(job_event("a0", "job-a", 5)),  # late: never overwrites job-a's newer state
    )) == "created"
    yield topic, cfg_path


def _table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_state_table_shows_the_latest_event_per_subject_newest_first_and_filters(
    state_topic: tuple[str, Path], kafka_bootstrap: str
) -> None:
    """One row per subject with its latest status, newest first (a late event did not overwrite job-a);
    --status, --platform, --type patterns and --since select rows; the footer counts them."""
    topic, _ = state_topic
    res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    assert res.returncode == 0, res.stderr
    rows = _table_rows(res.stdout)
    assert rows[0] == ["SUBJECT", "PLATFORM", "TYPE", "STATUS", "TIME", "AGE"]
    assert [(r[0], r[3]) for r in rows[1:]] == [
        ("experiments/e1/runs/run-1", "failed"), ("training-job/job-a", "failed"),
        ("training-job/job-b", "running"), ("experiments/e1/runs/run-2", "running")]
    assert rows[1][4] == "2024-01-01T00:00:50.000000Z" and rows[1][5].endswith("d")
    assert "4 of 4 subjects" in res.stderr
    res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--status", "FAILED",
                     "--platform", "sagemaker,azureml", "--type", "ml.job.*")
    assert [r[0] for r in _table_rows(res.stdout)[1:]] == ["experiments/e1/runs/run-1", "training-job/job-a"]
    res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                     "--since", "2024-01-01T00:00:30Z", "--platform", "sagemaker")
    assert [r[0] for r in _table_rows(res.stdout)[1:]] == ["training-job/job-a", "training-job/job-b"]


def test_state_json_lines_from_the_config_and_errors(state_topic: tuple[str, Path], kafka_bootstrap: str) -> None:
    """--config supplies the broker and the topic; --json prints whole CloudEvents (data included); a missing
    topic, no topic at all and a bad --since are clear errors."""
    _, cfg_path = state_topic
    res = bridge_cli("state", "--config", str(cfg_path), "--json", "--status", "failed")
    assert res.returncode == 0, res.stderr
    events = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert [(e["subject"], e["id"]) for e in events] == [("experiments/e1/runs/run-1", "r3"),
                                                         ("training-job/job-a", "a2")]
    assert events[1]["data"]["TrainingJobStatus"] == "Failed" and events[1]["platform"] == "sagemaker"
    res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", "no-such-topic-here")
    assert res.returncode == 1 and "topic no-such-topic-here does not exist" in res.stderr
    res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap)
    assert res.returncode == 2 and "no state topic" in res.stderr
    res = bridge_cli("state", "--config", str(cfg_path), "--since", "yesterday")
    assert res.returncode == 2 and "neither a duration" in res.stderr


def test_progress_line_only_on_a_terminal(state_topic: tuple[str, Path], kafka_bootstrap: str) -> None:
    """On a terminal stderr gets a progress line (rewritten with carriage returns, erased at the end); piped,
    stderr has the footer only."""
    topic, _ = state_topic
    leader, follower = pty.openpty()
    try:
        res = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", topic, stderr=follower)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    tty = b"".join(chunks).decode()
    assert res.returncode == 0
    assert f"\rreading {topic}: " in tty and "(100%)" in tty and "\r\x1b[K" in tty and "4 of 4 subjects" in tty
    piped = bridge_cli("state", "--bootstrap-servers", kafka_bootstrap, "--topic", topic)
    assert "reading" not in piped.stderr and "\r" not in piped.stderr
