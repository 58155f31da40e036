"""EventBridge rule -> SQS -> `bridge run` -> Kafka, on moto_server and tansu: duplicates dropped, order
restored per subject, SNS-wrapped bodies accepted, queue emptied only after publishing."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiobotocore.session import get_session

from bridge.testing.events import sagemaker_training_event
from testbed.kafka import collect
from testbed.process import BridgeProcess


async def test_eventbridge_to_sqs_to_bridge_to_kafka(
    aws_client_kwargs: dict[str, str],
    moto_endpoint: str,
    sqs_queue: Callable[..., str],
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """SageMaker events put on the EventBridge bus reach SQS through a rule, and the bridge publishes each once,
    in per-subject order, with raw and SNS-wrapped duplicates suppressed; the queue ends empty."""
    queue_url = sqs_queue("e2e")
    out, dead = kafka_topic("sqs-out", 2), kafka_topic("sqs-dead", 1)
    session = get_session()
    rule = f"sm-{uuid.uuid4().hex[:8]}"
    base = datetime(2024, 5, 1, tzinfo=UTC)
    async with (
        session.create_client("sqs", **aws_client_kwargs) as sqs,
        session.create_client("events", **aws_client_kwargs) as events,
    ):
        arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"][
            "QueueArn"
        ]
        await events.put_rule(
            Name=rule,
            EventPattern=orjson.dumps({"source": ["aws.sagemaker"], "detail-type": [{"prefix": "SageMaker"}]}).decode(),
        )
        await events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
        # 5 jobs x 4 status changes, put newest first (out of order), through EventBridge
        entries = []
        for job in range(5):
            for step in reversed(range(4)):
                status = ["InProgress", "InProgress", "Stopping", "Stopped"][step]
                entries.append(
                    {
                        "Source": "aws.sagemaker",
                        "DetailType": "SageMaker Training Job State Change",
                        "Time": base + timedelta(seconds=step),
                        "Detail": orjson.dumps(
                            {
                                "TrainingJobName": f"job{job}",
                                "TrainingJobStatus": status,
                                "LastModifiedTime": (base + timedelta(seconds=step)).isoformat(),
                            }
                        ).decode(),
                        "Resources": [f"arn:aws:sagemaker:us-east-1:123456789012:training-job/job{job}"],
                    }
                )
        entries.append({"Source": "aws.s3", "DetailType": "Object Created", "Detail": "{}"})  # not routed by rule
        for i in range(0, len(entries), 10):
            res = await events.put_events(Entries=entries[i : i + 10])
            assert res["FailedEntryCount"] == 0
        # the same raw envelope delivered twice (at-least-once), once more wrapped in SNS
        raw = orjson.dumps(sagemaker_training_event("dup-1", "jobx", 5, "Failed")).decode()
        sns = orjson.dumps(
            {"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": raw}
        ).decode()
        for body in (raw, raw, sns):
            await sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    cfg: dict[str, Any] = {
        "sources": [
            {
                "type": "sqs",
                "name": "aws",
                "queue_url": queue_url,
                "region": "us-east-1",
                "endpoint_url": moto_endpoint,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "wait_time_seconds": 1,
                "backlog_poll_seconds": 0.2,
            }
        ],
        "reorder": {"max_delay_ms": 1500},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
    }
    with BridgeProcess(cfg, tmp_path) as bridge:
        bridge.wait_ready()
        recs = await collect(kafka_bootstrap, [out], until=21, timeout=60, settle=2.0)
        dups = bridge.metric_sum("bridge_duplicates_dropped_total")
        queue = queue_url.rsplit("/", 1)[-1]
        lag = bridge.wait_for_zero_lag("aws", {queue})
        assert bridge.terminate() == 0, bridge.log_tail()
    events_out = [r.event for r in recs if r.event]
    assert len(events_out) == 21  # 20 via the rule + 1 of the 3 duplicate copies
    # 2 of the 3 copies, and more when moto hands one message to two concurrent receives (its receive takes no
    # lock; SQS itself is at least once): the output above has each event once either way
    assert dups >= 2
    assert lag == {queue: 0.0}  # the queue's backlog, read by the source, is empty once all were received
    assert {e["source"] for e in events_out} == {"aws.sagemaker/us-east-1/123456789012"}
    per_subject: dict[str, list[str]] = defaultdict(list)
    for e in events_out:
        per_subject[e["subject"]].append(e["status"])
    for job in range(5):
        assert per_subject[f"training-job/job{job}"] == ["running", "running", "stopping", "stopped"]
    assert per_subject["training-job/jobx"] == ["failed"]
    async with session.create_client("sqs", **aws_client_kwargs) as sqs:
        attrs = (
            await sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )
        )["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
