"""Kafka source and sink authentication against the tansu broker: SASL/OAUTHBEARER with Entra ID tokens from
DefaultAzureCredential (through a SASL front that checks the token, over TLS), a refused token, and mutual TLS
with an encrypted client key (through a TLS front that requires the client certificate)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

import bridge.kafka_oauth
from bridge.sinks.encoding import encode_routed
from bridge.sinks.kafka import KafkaSink, KafkaSinkConfig
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from bridge.testing.events import make_event
from bridge.testing.sources import collect_batches
from testbed.entra import ManagedIdentityEndpoint
from testbed.kafka_sasl import SaslOAuthFront
from testbed.logcapture import capture_module_logs
from testbed.servers import Tansu, free_port
from testbed.tls import TestCA, TlsProxy

NAMESPACE = "bridge-test.servicebus.windows.net"
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "fetch_max_wait_ms": 100,
              "poll_timeout_ms": 200}


async def roundtrip(settings: dict[str, Any], topic: str, group: str) -> list[bytes]:
    """Publish one event through a KafkaSink and read it back with a KafkaSource, both with ``settings``."""
    sink = KafkaSink(KafkaSinkConfig.model_validate({"type": "kafka", **settings}))
    await asyncio.wait_for(sink.start(), 30)
    try:
        await sink.publish([encode_routed(sink.encoder, "all", topic, make_event("auth-1"))])
    finally:
        await sink.stop()
    source = KafkaSource(KafkaSourceConfig.model_validate(
        {"type": "kafka", "topics": [topic], "group_id": group, **FAST_GROUP, **settings}))
    await asyncio.wait_for(source.start(), 30)
    try:
        batches = await collect_batches(source, 1)
    finally:
        await source.stop()
    return [m.body for b in batches for m in b.messages]


@pytest.fixture
def msi(managed_identity: ManagedIdentityEndpoint) -> ManagedIdentityEndpoint:
    """The managed-identity endpoint DefaultAzureCredential finds through the environment."""
    return managed_identity


@pytest.fixture
async def oauth_broker(tmp_path: Path, msi: ManagedIdentityEndpoint) -> AsyncIterator[tuple[Tansu, SaslOAuthFront,
                                                                                             Path]]:
    """tansu behind a SASL_SSL front that accepts exactly the tokens the identity issued for the namespace."""
    ca = TestCA(tmp_path / "tls")
    port = free_port()
    broker = Tansu(log_dir=tmp_path, advertised=f"127.0.0.1:{port}")
    await broker.astart()

    def issued(token: str) -> bool:
        return token in msi.tokens_for(f"https://{NAMESPACE}")

    front = await SaslOAuthFront(port, (broker.host, broker.port), issued,
                                 ssl=ca.server_context(ca.server(("127.0.0.1",)))).start()
    try:
        yield broker, front, ca.path
    finally:
        await front.stop()
        await broker.astop()


def oauth_settings(front: SaslOAuthFront, ca: Path, scope: str = f"https://{NAMESPACE}/.default") -> dict[str, Any]:
    return {"bootstrap_servers": f"127.0.0.1:{front.port}", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER", "ssl_cafile": str(ca),
            "sasl_oauth": {"provider": "azure", "scope": scope}, "request_timeout_ms": 10_000}


async def test_oauthbearer_with_entra_tokens_for_sink_and_source(
    oauth_broker: tuple[Tansu, SaslOAuthFront, Path], msi: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sasl_oauth provider azure (DefaultAzureCredential -> managed identity) authenticates the sink and the
    source over SASL_SSL: the front sees only tokens the identity issued for the namespace's scope, and the
    event makes the round trip; no token is logged."""
    broker, front, ca = oauth_broker
    logs = capture_module_logs(monkeypatch, bridge.kafka_oauth)
    topic = broker.create_topic("oauth", 1)
    bodies = await roundtrip(oauth_settings(front, ca), topic, "oauth-group")
    assert len(bodies) == 1 and b"auth-1" in bodies[0]
    assert front.tokens and all(accepted for _, accepted in front.tokens)
    assert {r.rstrip("/") for r, _ in msi.issued} == {f"https://{NAMESPACE}"}
    fetched = [e for e in logs.events if e["event"] == "kafka.oauth_token_fetched"]
    assert fetched and all(e["provider"] == "azure" and e["expires_in"] > 3000 for e in fetched)
    dumped = repr(logs.events)
    assert not any(token in dumped for _, token in msi.issued)


async def test_a_token_for_another_audience_is_refused(
    oauth_broker: tuple[Tansu, SaslOAuthFront, Path], msi: ManagedIdentityEndpoint,
) -> None:
    """A client asking for another scope presents a token the broker refuses: the sink cannot start."""
    _broker, front, ca = oauth_broker
    sink = KafkaSink(KafkaSinkConfig.model_validate(
        {"type": "kafka", **oauth_settings(front, ca, scope="https://other.servicebus.windows.net/.default")}))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(sink.start(), 30)
    await sink.stop()
    assert front.tokens and not any(accepted for _, accepted in front.tokens)


async def test_mutual_tls_with_an_encrypted_client_key(tmp_path: Path) -> None:
    """security_protocol SSL with ssl_certfile/ssl_keyfile/ssl_keyfile_password: the TLS front, which requires
    a client certificate from the test CA, lets the sink and source through and sees the client's name; a
    client without a certificate is refused."""
    ca = TestCA(tmp_path / "tls")
    client = ca.client("ml-event-bridge", key_password="k3y-pass")
    port = free_port()
    broker = Tansu(log_dir=tmp_path, advertised=f"127.0.0.1:{port}")
    await broker.astart()
    proxy = await TlsProxy(port, (broker.host, broker.port),
                           ca.server_context(ca.server(("127.0.0.1",)), require_client_cert=True)).start()
    try:
        topic = broker.create_topic("mtls", 1)
        settings = {"bootstrap_servers": f"127.0.0.1:{port}", "security_protocol": "SSL", "ssl_cafile": str(ca.path),
                    "ssl_certfile": str(client.cert), "ssl_keyfile": str(client.key),
                    "ssl_keyfile_password": "k3y-pass", "request_timeout_ms": 10_000}
        bodies = await roundtrip(settings, topic, "mtls-group")
        assert len(bodies) == 1 and b"auth-1" in bodies[0]
        assert set(proxy.peers) == {"ml-event-bridge"}
        anonymous = KafkaSink(KafkaSinkConfig.model_validate(
            {"type": "kafka", **{k: v for k, v in settings.items() if not k.startswith(("ssl_cert", "ssl_key"))}}))
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(anonymous.start(), 30)
        await anonymous.stop()
    finally:
        await proxy.stop()
        await broker.astop()
