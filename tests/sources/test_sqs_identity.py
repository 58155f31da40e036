"""SQS without static keys: the AWS default credential chain takes IRSA's web identity (AWS_ROLE_ARN +
AWS_WEB_IDENTITY_TOKEN_FILE), assumes the role at moto's STS through AWS_ENDPOINT_URL_STS, and signs the SQS
calls (AWS_ENDPOINT_URL_SQS) with the temporary credentials it got."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import boto3  # type: ignore[import-untyped]
import orjson
import pytest

import bridge.sources.sqs
from bridge.sources.sqs import SqsSource, SqsSourceConfig
from bridge.testing.events import sagemaker_training_event
from bridge.testing.sources import collect_batches
from testbed.entra import jwt
from testbed.logcapture import capture_module_logs
from testbed.recorder import RecordingProxy

ROLE_ARN = "arn:aws:iam::123456789012:role/ml-event-bridge"
AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                       "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                       "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL")


@pytest.fixture
async def recorder(moto_endpoint: str) -> AsyncIterator[RecordingProxy]:
    proxy = await RecordingProxy(moto_endpoint).start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
def irsa_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recorder: RecordingProxy) -> str:
    """The environment EKS injects for IRSA, with both service endpoints pointed at moto (through the
    recorder), and nothing else the credential chain could use. Returns the projected token."""
    for var in AWS_CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    token = jwt({"iss": "https://oidc.eks.us-east-1.amazonaws.com/id/TEST", "sub":
                 "system:serviceaccount:ml:ml-event-bridge", "aud": "sts.amazonaws.com"})
    token_file = tmp_path / "token"
    token_file.write_text(token)
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", recorder.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", recorder.url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return token


async def test_irsa_web_identity_end_to_end_through_service_endpoints(
    irsa_env: str, recorder: RecordingProxy, sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config with no keys and no endpoint_url: STS AssumeRoleWithWebIdentity gets the projected token and the
    role, SQS ReceiveMessage/DeleteMessageBatch are signed with the temporary key STS returned, the event is
    received and deleted, and neither the token nor the temporary secret is logged."""
    queue_url = sqs_queue("irsa")
    boto3.client("sqs", **aws_client_kwargs).send_message(
        QueueUrl=queue_url, MessageBody=orjson.dumps(sagemaker_training_event("irsa-1", "job", 1)).decode())
    logs = capture_module_logs(monkeypatch, bridge.sources.sqs)
    cfg = SqsSourceConfig.model_validate({"type": "sqs", "queue_url": queue_url, "region": "us-east-1",
                                          "wait_time_seconds": 1, "receivers": 1, "backlog_poll_seconds": 0})
    assert cfg.endpoint_url is None and cfg.aws_access_key_id is None
    source = SqsSource(cfg)
    await source.start()
    try:
        (batch,) = await collect_batches(source, 1)
        assert orjson.loads(batch.messages[0].body)["id"] == "irsa-1"
        assert batch.ack is not None
        await batch.ack()
    finally:
        await source.stop()

    (assume,) = recorder.calls("AssumeRoleWithWebIdentity")
    assert assume.form["RoleArn"] == ROLE_ARN and assume.form["WebIdentityToken"] == irsa_env
    assert assume.access_key is None  # web identity needs no prior credentials
    temporary = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", assume.response)
    secret = re.search(rb"<SecretAccessKey>([^<]+)</SecretAccessKey>", assume.response)
    assert temporary is not None and secret is not None
    for action in ("ReceiveMessage", "DeleteMessageBatch"):
        calls = recorder.calls(action)
        assert calls and {c.access_key for c in calls} == {temporary.group(1).decode()}, action
    started = [e for e in logs.events if e["event"] == "sqs.source_started"]
    assert started and started[0]["auth"] == "assume-role-with-web-identity"
    dumped = repr(logs.events)
    assert irsa_env not in dumped and secret.group(1).decode() not in dumped
