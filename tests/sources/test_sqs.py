"""SQS source against moto_server, what is its own: EventBridge rule -> SQS, SNS -> SQS, lag, the visibility
heartbeat, nack and stop releasing at once (the contract every source keeps is tests/sources/conformance/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import boto3  # type: ignore[import-untyped]
import orjson
import pytest
from botocore.exceptions import ClientError

from bridge.sources.sqs import SqsSource, SqsSourceConfig
from bridge.testing.sources import collect_batches
from testbed.waiting import wait_for
from tests.fixtures.kafka_aws import unique

SAGEMAKER_DETAIL = {
    "TrainingJobName": "kmeans-1",
    "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/kmeans-1",
    "TrainingJobStatus": "InProgress",
    "SecondaryStatus": "Starting",
    "LastModifiedTime": 1700000000123,
}


def source_for(queue_url: str, aws: dict[str, str], **extra: Any) -> SqsSource:
    cfg = SqsSourceConfig.model_validate(
        {
            "type": "sqs",
            "queue_url": queue_url,
            "region": aws["region_name"],
            "endpoint_url": aws["endpoint_url"],
            "aws_access_key_id": aws["aws_access_key_id"],
            "aws_secret_access_key": aws["aws_secret_access_key"],
            "wait_time_seconds": 1,
            **extra,
        }
    )
    return SqsSource(cfg)


collect = collect_batches


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def route_sagemaker_to(queue_url: str, aws: dict[str, str]) -> Any:
    """An EventBridge rule on source aws.sagemaker targeting the queue; returns the events client."""
    sqs = boto3.client("sqs", **aws)
    events = boto3.client("events", **aws)
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": orjson.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": arn,
                        }
                    ],
                }
            ).decode()
        },
    )
    rule = unique("sagemaker-to-sqs")
    pattern = {"source": ["aws.sagemaker"], "detail-type": [{"suffix": "State Change"}]}
    events.put_rule(Name=rule, EventPattern=orjson.dumps(pattern).decode(), State="ENABLED")
    events.put_targets(Rule=rule, Targets=[{"Id": "bridge", "Arn": arn}])
    return events


async def test_eventbridge_rule_delivers_sagemaker_events_through_sqs(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """A SageMaker-shaped event put on EventBridge reaches the source as the raw EventBridge envelope."""
    url = sqs_queue("eb")
    events = route_sagemaker_to(url, aws_client_kwargs)
    put = events.put_events(
        Entries=[
            {
                "Source": "aws.sagemaker",
                "DetailType": "SageMaker Training Job State Change",
                "Detail": orjson.dumps(SAGEMAKER_DETAIL).decode(),
                "Resources": [SAGEMAKER_DETAIL["TrainingJobArn"]],
            },
            {
                "Source": "my.app",
                "DetailType": "Other State Change",
                "Detail": "{}",
            },  # not matched by the rule
        ]
    )
    assert put["FailedEntryCount"] == 0
    source = source_for(url, aws_client_kwargs)
    await source.start()
    try:
        assert source.ready
        (batch,) = await collect(source, 1)
        await asyncio.sleep(1.5)  # a second receive round: the unmatched event must not show up
        assert source.inflight == 1
    finally:
        await source.stop()
    (message,) = batch.messages
    body = orjson.loads(message.body)
    assert body["source"] == "aws.sagemaker"
    assert body["detail-type"] == "SageMaker Training Job State Change"
    assert body["detail"] == SAGEMAKER_DETAIL
    assert body["resources"] == [SAGEMAKER_DETAIL["TrainingJobArn"]]
    assert body["id"] == put["Entries"][0]["EventId"]
    assert message.position.startswith(url.rsplit("/", 1)[1] + "#")
    assert message.source == "sqs" and batch.source == "sqs"


async def test_lag_reports_the_queue_backlog_until_everything_is_received(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """``lag()`` is the queue's ApproximateNumberOfMessages: all 25 before any receive, 0 once received."""
    url = sqs_queue("backlog")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    for i in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps({"n": i}).decode())
    source = source_for(url, aws_client_kwargs, backlog_poll_seconds=0.1)
    queue = url.rsplit("/", 1)[-1]
    await source.start()
    try:
        # receivers start with batches(): nothing received yet
        await wait_for(lambda: source.lag() == {queue: 25}, within=10, what="the backlog of 25")
        batches = await collect(source, 25)
        await wait_for(lambda: source.lag() == {queue: 0}, within=10, what="an empty backlog")
        for batch in batches:
            assert batch.ack is not None
            await batch.ack()
    finally:
        await source.stop()
    assert source.lag() == {}


async def test_heartbeat_extends_visibility_of_held_batches(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """A batch held 5 s under a 2 s visibility timeout is never redelivered to a competing receive."""
    url = sqs_queue("hold")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    sqs.send_message(QueueUrl=url, MessageBody='{"held": true}')
    source = source_for(url, aws_client_kwargs, visibility_timeout=2, receivers=1)
    await source.start()
    try:
        (batch,) = await collect(source, 1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a competitor polling the queue the whole time
            got = await asyncio.to_thread(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=0)
            assert "Messages" not in got, "held message was redelivered"
            await asyncio.sleep(0.25)
        assert source.inflight == 1  # nor did the source's own receive loop get it a second time
        assert batch.ack is not None
        await batch.ack()
    finally:
        await source.stop()
    assert queue_depth(sqs, url) == (0, 0)


async def test_without_heartbeat_the_message_comes_back(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """Control for the heartbeat test: with extend_visibility off, the emulator does redeliver after 2 s."""
    url = sqs_queue("nohb")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    source = source_for(url, aws_client_kwargs, visibility_timeout=2, receivers=1, extend_visibility=False)
    await source.start()
    try:
        (batch,) = await collect(source, 1)
        (again,) = await collect(source, 1, within=8)  # the source's own receive loop gets it back
        assert again.messages[0].position == batch.messages[0].position
    finally:
        await source.stop()


async def test_nack_makes_a_batch_visible_again_at_once(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """A batch's nack (the pipeline gave it up) resets its visibility to 0, so a consumer receives it again at
    once (long before the 60 s visibility timeout would have returned it); an ack after that deletes nothing."""
    url = sqs_queue("rel")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    sqs.send_message(QueueUrl=url, MessageBody='{"again": 1}')
    source = source_for(url, aws_client_kwargs, visibility_timeout=60, receivers=1)
    await source.start()
    try:
        (batch,) = await collect(source, 1)
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
        assert batch.nack is not None and batch.ack is not None
        await batch.nack()
        await batch.ack()  # too late: ignored, the message stays in the queue
        # the source's own receiver keeps polling and competes with any other consumer, so it is the one
        # asked to receive the message again
        (again,) = await collect(source, 1, within=10)
        assert [m.body for m in again.messages] == [b'{"again": 1}']
        assert again.messages[0].position == batch.messages[0].position  # the same SQS message
        # only the new receipt is in flight: the nacked batch left (the receiver may take the message again
        # before the nack returns, so no moment with nothing in flight is guaranteed)
        assert source.inflight == 1
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        assert int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 1
    finally:
        await source.stop()


async def test_sns_wrapped_body_passes_through(
    sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]
) -> None:
    """An SNS notification envelope delivered via SQS reaches the pipeline unchanged (normalizer unwraps)."""
    url = sqs_queue("sns")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    sns = boto3.client("sns", **aws_client_kwargs)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_arn = sns.create_topic(Name=unique("ml-events"))["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    inner = {
        "version": "0",
        "id": "11111111-2222-3333-4444-555555555555",
        "detail-type": "SageMaker Endpoint State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep-1"],
        "detail": {"EndpointName": "ep-1", "EndpointStatus": "IN_SERVICE"},
    }
    sns.publish(TopicArn=topic_arn, Message=orjson.dumps(inner).decode())
    source = source_for(url, aws_client_kwargs)
    await source.start()
    try:
        (batch,) = await collect(source, 1)
        assert batch.ack is not None
        await batch.ack()
    finally:
        await source.stop()
    envelope = orjson.loads(batch.messages[0].body)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic_arn
    assert orjson.loads(envelope["Message"]) == inner


async def test_stop_releases_unacked_batches(sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str]) -> None:
    """Stopping with an unacked batch gives its messages back at once, not after the visibility timeout."""
    url = sqs_queue("stop")
    sqs = boto3.client("sqs", **aws_client_kwargs)
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    source = source_for(url, aws_client_kwargs, visibility_timeout=120)
    await source.start()
    await collect(source, 1)
    await source.stop()
    assert not source.ready
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert len(got["Messages"]) == 1


async def test_start_fails_fast_on_a_missing_queue(aws_client_kwargs: dict[str, str]) -> None:
    """start() raises for a queue that does not exist instead of polling it forever."""
    url = aws_client_kwargs["endpoint_url"] + "/123456789012/" + unique("absent")
    source = source_for(url, aws_client_kwargs)
    with pytest.raises(ClientError):
        await source.start()
    assert not source.ready
