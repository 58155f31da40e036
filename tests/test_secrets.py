"""Secrets stay secret on every new identity path: a `bridge run` process whose Kafka source authenticates to
Apache Kafka with Entra ID OAUTHBEARER tokens (checked by the broker) and whose sink uses mutual TLS with an
encrypted client key, whose Event Hubs source presents tokens the server refuses, and whose SQS source has a
static secret key, logs (at debug level), serves /metrics and prints check-config output; none of it contains
a token it used, the key password, the private key or the secret."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml

from bridge.logs import scrub
from bridge.testing.events import sagemaker_training_event
from testbed.entra import EVENTHUBS_AUDIENCE, ManagedIdentityEndpoint, entra_token
from testbed.eventhubs_server import EventHubsServer
from testbed.kafka import collect, produce
from testbed.kafka_auth import OAUTH_AUDIENCE, OAUTH_SCOPE, SecuredKafka
from testbed.process import BridgeProcess
from testbed.servers import free_port
from testbed.tls import TestCA, TlsProxy
from testbed.waiting import wait_for
from tests.fixtures.kafka_aws import unique

NAMESPACE = "bridge-secrets.servicebus.windows.net"
KEY_PASSWORD = "pw-ssl-key-7f3a9c"
SQS_SECRET = "sqs-secret-9d2e1b-SECRET"


def test_scrub_removes_every_new_kind_of_secret() -> None:
    """The log scrubber removes JWTs, Bearer tokens, SigV4 signatures and session tokens, MSK IAM tokens, STS
    answers and PEM private keys from any string."""
    jwt = entra_token("https://eventhubs.azure.net")
    text = (f"token {jwt} / Authorization: Bearer abc.DEF-123 / ...&X-Amz-Signature=deadbeef&X-Amz-Security-Token="
            "FwoGZX / aHR0cHM6Ly9rYWZrYS51cy1lYXN0LTEuYW1hem9uYXdzLmNvbS8_QWN0aW9u / <SecretAccessKey>wJalr"
            "</SecretAccessKey> / \"access_token\": \"opaque-123\" / -----BEGIN PRIVATE KEY-----\nMIGH\n"
            "-----END PRIVATE KEY-----")
    out = scrub(text)
    for secret in (jwt, "abc.DEF-123", "deadbeef", "FwoGZX", "aHR0cHM6Ly9rYWZrYS51cy1lYXN0LTEu", "wJalr",
                   "opaque-123", "MIGH"):
        assert secret not in out, secret


async def test_no_secret_in_logs_metrics_or_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eventhubs_server: EventHubsServer,
    eventhub: Callable[..., str], sqs_queue: Callable[..., str], aws_client_kwargs: dict[str, str],
    managed_identity: ManagedIdentityEndpoint, auth_kafka: SecuredKafka,
) -> None:
    """Grep every output of a running bridge (log file, /metrics, check-config) for the secrets it handled, after
    an event went through its broker-authenticated Kafka source and sink."""
    msi = managed_identity
    msi.signer = auth_kafka.signer  # tokens the broker's OAUTH listener validates
    ca = TestCA(tmp_path / "tls")
    client = auth_kafka.ca.client("bridge", stem=unique("client"), key_password=KEY_PASSWORD)
    eh_front = await TlsProxy(free_port(), (eventhubs_server.host, eventhubs_server.port),
                              ca.server_context(ca.server((NAMESPACE, "127.0.0.1"), stem="eh"))).start()
    hub = eventhub(1)
    raw, out, dead = (auth_kafka.broker.create_topic(unique(name), 1) for name in ("in", "out", "dead"))
    config = {
        "log": {"level": "debug"},
        "sources": [
            {"type": "kafka", "name": "kafka", "topics": [raw], "group_id": unique("g"),
             "bootstrap_servers": auth_kafka.bootstrap("OAUTH"), "security_protocol": "SASL_SSL",
             "sasl_mechanism": "OAUTHBEARER", "sasl_oauth": {"provider": "azure", "scope": OAUTH_SCOPE},
             "ssl_cafile": str(auth_kafka.ca.path)},
            {"type": "eventhubs", "name": "azure", "fully_qualified_namespace": NAMESPACE, "eventhub_name": hub,
             "custom_endpoint_address": f"sb://127.0.0.1:{eh_front.port}", "connection_verify": str(ca.path),
             "max_wait_time": 0.5},
            {"type": "sqs", "name": "aws", "queue_url": sqs_queue("secrets"), "region": "us-east-1",
             "endpoint_url": aws_client_kwargs["endpoint_url"], "aws_access_key_id": "AKIATESTSECRETS",
             "aws_secret_access_key": SQS_SECRET, "wait_time_seconds": 1},
        ],
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": auth_kafka.bootstrap("MTLS"), "security_protocol": "SSL",
                 "ssl_cafile": str(auth_kafka.ca.path), "ssl_certfile": str(client.cert),
                 "ssl_keyfile": str(client.key), "ssl_keyfile_password": KEY_PASSWORD},
    }
    bridge = BridgeProcess(config, tmp_path / "bridge")
    try:
        bridge.start()
        await asyncio.to_thread(bridge.wait_http, "/healthz")
        # the Kafka source (OAUTHBEARER) and the sink (mutual TLS) passed the broker: an event makes the trip
        await produce(auth_kafka.broker.bootstrap, raw, [orjson.dumps(sagemaker_training_event("s-1", "job", 1))])
        records = await collect(auth_kafka.broker.bootstrap, [out], until=1, timeout=60)
        assert [r.event["id"] for r in records if r.event] == ["s-1"]
        # the Event Hubs source presented tokens and was refused
        await wait_for(lambda: any(p.type == "jwt" and not p.accepted and p.audience.startswith(f"sb://{NAMESPACE}")
                                     for p in eventhubs_server.put_tokens), within=60)
        await wait_for(lambda: "eventhubs.receive_error" in bridge.log_path.read_text(), within=60)
        _, metrics = await asyncio.to_thread(bridge.get, "/metrics")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(bridge.terminate)
        await eh_front.stop()
    log_text = bridge.log_path.read_text()
    check_config = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "check-config", str(bridge.config_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert check_config.returncode == 0 and "OK" in check_config.stdout

    tokens = [t for _, t in msi.issued]
    assert msi.tokens_for(OAUTH_AUDIENCE) and msi.tokens_for(EVENTHUBS_AUDIENCE)  # both sources used the identity
    secrets = [*tokens, KEY_PASSWORD, SQS_SECRET, client.key.read_text().splitlines()[1]]
    for where, text in (("log", log_text), ("metrics", metrics.decode()), ("check-config", check_config.stdout +
                                                                        check_config.stderr)):
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where} output"
    assert "eyJ" not in log_text.replace("eyJ***", "")  # no JWT of any kind, not only the ones issued here
    # and the outputs are real: the log has the identity lines, the config carries the secrets we looked for
    assert "kafka.oauth_token_fetched" in log_text and "eventhubs.receive_error" in log_text
    assert KEY_PASSWORD in yaml.safe_dump(config) and io.StringIO(log_text).readline()
