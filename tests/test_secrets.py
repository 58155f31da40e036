"""Secrets stay secret on every new identity path: a `bridge run` process whose sink and Kafka source use
Entra ID OAUTHBEARER tokens and an encrypted client key, whose Event Hubs source presents tokens the server
refuses, and whose SQS source has a static secret key, logs (at debug level), serves /metrics and prints
check-config output; none of it contains a token it used, the key password, the private key or the secret."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.logs import scrub
from testbed.entra import ManagedIdentityEndpoint, entra_token
from testbed.eventhubs_server import EventHubsServer
from testbed.kafka_sasl import SaslOAuthFront
from testbed.process import BridgeProcess
from testbed.servers import Tansu, free_port
from testbed.tls import TestCA, TlsProxy
from testbed.waiting import wait_for

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
    managed_identity: ManagedIdentityEndpoint,
) -> None:
    """Grep every output of a running bridge (log file, /metrics, check-config) for the secrets it handled."""
    msi = managed_identity
    ca = TestCA(tmp_path / "tls")
    client = ca.client("bridge", key_password=KEY_PASSWORD)
    kafka_port = free_port()
    broker = Tansu(log_dir=tmp_path, advertised=f"127.0.0.1:{kafka_port}")
    await broker.astart()
    front = await SaslOAuthFront(kafka_port, (broker.host, broker.port),
                                 lambda t: t in msi.tokens_for(f"https://{NAMESPACE}"),
                                 ssl=ca.server_context(ca.server(("127.0.0.1",)))).start()
    eh_front = await TlsProxy(free_port(), (eventhubs_server.host, eventhubs_server.port),
                              ca.server_context(ca.server((NAMESPACE, "127.0.0.1"), stem="eh"))).start()
    hub = eventhub(1)
    kafka_auth: dict[str, Any] = {
        "bootstrap_servers": f"127.0.0.1:{kafka_port}", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "OAUTHBEARER", "sasl_oauth": {"provider": "azure", "scope": f"https://{NAMESPACE}/.default"},
        "ssl_cafile": str(ca.path), "ssl_certfile": str(client.cert), "ssl_keyfile": str(client.key),
        "ssl_keyfile_password": KEY_PASSWORD,
    }
    config = {
        "log": {"level": "debug"},
        "sources": [
            {"type": "kafka", "name": "kafka", "topics": [broker.create_topic("in", 1)], "group_id": "g",
             **kafka_auth},
            {"type": "eventhubs", "name": "azure", "fully_qualified_namespace": NAMESPACE, "eventhub_name": hub,
             "custom_endpoint_address": f"sb://127.0.0.1:{eh_front.port}", "connection_verify": str(ca.path),
             "max_wait_time": 0.5},
            {"type": "sqs", "name": "aws", "queue_url": sqs_queue("secrets"), "region": "us-east-1",
             "endpoint_url": aws_client_kwargs["endpoint_url"], "aws_access_key_id": "AKIATESTSECRETS",
             "aws_secret_access_key": SQS_SECRET, "wait_time_seconds": 1},
        ],
        "sink": {"type": "kafka", **kafka_auth},
    }
    bridge = BridgeProcess(config, tmp_path / "bridge")
    try:
        bridge.start()
        await asyncio.to_thread(bridge.wait_http, "/healthz")
        # the sink and the Kafka source authenticated; the Event Hubs source presented tokens and was refused
        await wait_for(lambda: sum(1 for _, ok in front.tokens if ok) >= 2, within=60)
        await wait_for(lambda: any(p.type == "jwt" and not p.accepted and p.audience.startswith(f"sb://{NAMESPACE}")
                                     for p in eventhubs_server.put_tokens), within=60)
        await wait_for(lambda: "eventhubs.receive_error" in bridge.log_path.read_text(), within=60)
        _, metrics = await asyncio.to_thread(bridge.get, "/metrics")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(bridge.terminate)
        await front.stop()
        await eh_front.stop()
        await broker.astop()
    log_text = bridge.log_path.read_text()
    check_config = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "check-config", str(bridge.config_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert check_config.returncode == 0 and "OK" in check_config.stdout

    tokens = [t for _, t in msi.issued]
    assert len(tokens) >= 2 and any(NAMESPACE in r for r, _ in msi.issued)
    secrets = [*tokens, KEY_PASSWORD, SQS_SECRET, client.key.read_text().splitlines()[1]]
    for where, text in (("log", log_text), ("metrics", metrics.decode()), ("check-config", check_config.stdout +
                                                                        check_config.stderr)):
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where} output"
    assert "eyJ" not in log_text.replace("eyJ***", "")  # no JWT of any kind, not only the ones issued here
    # and the outputs are real: the log has the identity lines, the config carries the secrets we looked for
    assert "kafka.oauth_token_fetched" in log_text and "eventhubs.receive_error" in log_text
    assert KEY_PASSWORD in yaml.safe_dump(config) and io.StringIO(log_text).readline()
