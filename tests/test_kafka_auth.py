"""Kafka source and sink authentication checked by Apache Kafka itself (the ``auth_kafka`` node,
``testbed.kafka_auth``): SASL/SCRAM-SHA-512 with a user created at format, SASL/OAUTHBEARER with Entra ID tokens
from DefaultAzureCredential that the broker validates (signature against its JWKS, audience, issuer, expiry),
and mutual TLS with an encrypted client key; each with the refusal the broker answers a wrong credential with."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

import bridge.kafka_oauth
from bridge.sinks.encoding import encode_routed
from bridge.sinks.kafka import KafkaSink, KafkaSinkConfig
from bridge.sources.kafka import KafkaSource, KafkaSourceConfig
from bridge.testing.events import make_event
from bridge.testing.sources import collect_batches
from testbed.entra import ManagedIdentityEndpoint, entra_token
from testbed.kafka import ids_on
from testbed.kafka_auth import OAUTH_AUDIENCE, OAUTH_SCOPE, SCRAM_USER, SecuredKafka
from testbed.logcapture import capture_module_logs
from testbed.waiting import wait_for
from tests.fixtures.kafka_aws import unique

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "fetch_max_wait_ms": 100,
              "poll_timeout_ms": 200}
KEY_PASSWORD = "k3y-pass"
LIFETIME = 20.0
"""Seconds a token lives in the refresh test."""


async def roundtrip(settings: dict[str, Any], topic: str) -> list[bytes]:
    """Publish one event through a KafkaSink and read it back with a KafkaSource, both with ``settings``."""
    sink = KafkaSink(KafkaSinkConfig.model_validate({"type": "kafka", **settings}))
    await asyncio.wait_for(sink.start(), 30)
    try:
        await sink.publish([encode_routed(sink.encoder, "all", topic, make_event("auth-1"))])
    finally:
        await sink.stop()
    source = KafkaSource(KafkaSourceConfig.model_validate(
        {"type": "kafka", "topics": [topic], "group_id": unique("g"), **FAST_GROUP, **settings}))
    await asyncio.wait_for(source.start(), 30)
    try:
        batches = await collect_batches(source, 1)
    finally:
        await source.stop()
    return [m.body for b in batches for m in b.messages]


async def refused(settings: dict[str, Any], *, source: bool = False) -> None:
    """The sink (or source) with ``settings`` cannot start: aiokafka gives up bootstrapping."""
    client: KafkaSink | KafkaSource
    if source:
        client = KafkaSource(KafkaSourceConfig.model_validate(
            {"type": "kafka", "topics": ["any"], "group_id": unique("g"), **settings}))
    else:
        client = KafkaSink(KafkaSinkConfig.model_validate({"type": "kafka", **settings}))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(client.start(), 30)
    await client.stop()


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def log_size(auth_kafka: SecuredKafka) -> int:
    return auth_kafka.broker.log_path.stat().st_size


async def broker_log_shows(auth_kafka: SecuredKafka, since: int, *needles: str) -> None:
    """Wait (10 s at most, else fail) until the broker's own log, from byte ``since`` on, has a line holding every
    one of ``needles``."""

    def found() -> bool:
        with auth_kafka.broker.log_path.open("rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        return any(all(n in line for n in needles) for line in lines)

    await wait_for(found, within=10, what=f"a broker log line with {needles}")


def oauth_settings(auth_kafka: SecuredKafka, scope: str = OAUTH_SCOPE, **oauth: Any) -> dict[str, Any]:
    return {"bootstrap_servers": auth_kafka.bootstrap("OAUTH"), "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER", "ssl_cafile": str(auth_kafka.ca.path),
            "sasl_oauth": {"provider": "azure", "scope": scope, **oauth}, "request_timeout_ms": 10_000}


@pytest.fixture
def msi(managed_identity: ManagedIdentityEndpoint, auth_kafka: SecuredKafka) -> ManagedIdentityEndpoint:
    """The managed-identity endpoint DefaultAzureCredential finds, issuing tokens signed with the key whose JWKS
    the broker's OAUTH listener trusts."""
    managed_identity.signer = auth_kafka.signer
    return managed_identity


async def test_scram_sha_512_user_created_at_format(auth_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
                                                    ) -> None:
    """SASL_PLAINTEXT + SCRAM-SHA-512 with the user created at format lets the sink and source through; the
    broker refuses a wrong password (SaslAuthenticationFailed) and the sink cannot start."""
    settings = {"bootstrap_servers": auth_kafka.bootstrap("SCRAM"), "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": SCRAM_USER,
                "sasl_password": auth_kafka.scram_users[SCRAM_USER], "request_timeout_ms": 10_000}
    bodies = await roundtrip(settings, auth_kafka.broker.create_topic(unique("scram"), 1))
    assert len(bodies) == 1 and b"auth-1" in bodies[0]
    assert "SaslAuthenticationFailed" not in caplog.text
    since = log_size(auth_kafka)
    await refused({**settings, "sasl_password": "not-the-password"})
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text
    await broker_log_shows(auth_kafka, since, "Failed authentication with", "invalid credentials")


async def test_oauthbearer_tokens_from_the_managed_identity_pass_the_brokers_validation(
    auth_kafka: SecuredKafka, msi: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sasl_oauth provider azure (DefaultAzureCredential -> managed identity) fetches signed tokens for the
    listener's audience, which the broker validates, for the sink and the source; no token is logged."""
    logs = capture_module_logs(monkeypatch, bridge.kafka_oauth)
    bodies = await roundtrip(oauth_settings(auth_kafka), auth_kafka.broker.create_topic(unique("oauth"), 1))
    assert len(bodies) == 1 and b"auth-1" in bodies[0]
    tokens = msi.tokens_for(OAUTH_AUDIENCE)
    assert tokens and len(tokens) == len(msi.issued)
    assert all(claims(t)["aud"] == OAUTH_AUDIENCE for t in tokens)
    fetched = [e for e in logs.events if e["event"] == "kafka.oauth_token_fetched"]
    assert fetched and all(e["provider"] == "azure" and e["expires_in"] > 3000 for e in fetched)
    assert not any(token in repr(logs.events) for token in tokens)


@pytest.mark.parametrize("case", ["wrong_audience", "expired"])
async def test_the_broker_refuses_a_token_for_another_audience_and_an_expired_one(
    case: str, auth_kafka: SecuredKafka, msi: ManagedIdentityEndpoint, caplog: pytest.LogCaptureFixture,
) -> None:
    """A token for another audience (sink) or an expired one (source), fetched by the bridge's provider, is
    refused by the broker for that reason: aiokafka gets SaslAuthenticationFailed and the client cannot start."""
    since = log_size(auth_kafka)
    if case == "wrong_audience":
        await refused(oauth_settings(auth_kafka, scope="https://other.bridge.test/.default"))
        reason = "Audience (aud) claim [https://other.bridge.test] doesn't contain an acceptable identifier"
    else:
        msi.lifetime = -300.0
        await refused(oauth_settings(auth_kafka), source=True)
        reason = "is on or after the Expiration Time"
    assert msi.issued, "the provider fetched a token from the managed identity"
    assert 'SaslAuthenticationFailed: {"status":"invalid_token"}' in caplog.text
    jti = claims(msi.issued[-1][1])["jti"]  # the broker's own reason, for the very token the provider fetched
    await broker_log_shows(auth_kafka, since, "Could not validate the access token", jti, reason)


async def test_the_sink_keeps_publishing_across_token_lifetimes(
    auth_kafka: SecuredKafka, msi: ManagedIdentityEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker ends a connection's session when its token expires (connections.max.reauth.ms; aiokafka cannot
    re-authenticate in place, KIP-368): a sink holding one fixed 20 s token gets no acknowledgement after it
    expires, while the sink whose provider fetches from the managed identity (refresh margin 5 s) reconnects with
    a new token each time: over 45 s (more than two lifetimes) it fetched at least three tokens, the broker
    refused none of them, and every record it published was acknowledged within 10 s and is on the topic."""
    logs = capture_module_logs(monkeypatch, bridge.kafka_oauth)
    msi.lifetime = LIFETIME
    topic = auth_kafka.broker.create_topic(unique("refresh"), 1)
    since = log_size(auth_kafka)
    refreshing = KafkaSink(KafkaSinkConfig.model_validate(
        {"type": "kafka", **oauth_settings(auth_kafka, refresh_margin_seconds=5)}))
    fixed_token = entra_token(OAUTH_AUDIENCE, LIFETIME, signer=auth_kafka.signer)
    fixed_settings = {k: v for k, v in oauth_settings(auth_kafka).items() if k != "sasl_oauth"}
    fixed = KafkaSink(KafkaSinkConfig.model_validate({"type": "kafka", **fixed_settings,
                                                      "sasl_oauth_token": fixed_token}))

    async def publish(sink: KafkaSink, n: int) -> None:
        await asyncio.wait_for(sink.publish([encode_routed(sink.encoder, "all", topic, make_event(f"r-{n}"))]), 10)

    await asyncio.wait_for(asyncio.gather(refreshing.start(), fixed.start()), 30)
    try:
        await publish(fixed, -1)  # the fixed token works while it is valid
        fixed_after_expiry: asyncio.Task[None] | None = None
        sent, started = 0, time.time()
        while time.time() < started + 2.25 * LIFETIME:
            await publish(refreshing, sent)
            sent += 1
            if fixed_after_expiry is None and time.time() > claims(fixed_token)["exp"] + 1:
                fixed_after_expiry = asyncio.create_task(publish(fixed, -2))
            await asyncio.sleep(0.5)
        assert fixed_after_expiry is not None
        with pytest.raises(TimeoutError):
            await fixed_after_expiry
    finally:
        await refreshing.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(fixed.stop(), 5)  # its last batch can never be delivered
    tokens = msi.tokens_for(OAUTH_AUDIENCE)
    assert len(set(tokens)) >= 3, f"{len(tokens)} tokens in {2.25 * LIFETIME:g} s of {LIFETIME:g} s tokens"
    fetched = [e for e in logs.events if e["event"] == "kafka.oauth_token_fetched"]
    assert len(fetched) == len(tokens) and all(e["expires_in"] <= LIFETIME for e in fetched)
    with auth_kafka.broker.log_path.open("rb") as log:
        log.seek(since)
        broker_log = log.read().decode(errors="replace")
    assert not any(claims(t)["jti"] in broker_log for t in tokens), "the broker refused a token of the provider"
    ids = await ids_on(auth_kafka.broker.bootstrap, topic, sent + 1)
    assert {f"r-{n}".encode() for n in range(sent)} <= set(ids) and b"r--1" in ids


async def test_mutual_tls_with_an_encrypted_client_key(auth_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """security_protocol SSL with ssl_certfile/ssl_keyfile/ssl_keyfile_password passes the listener with
    ssl.client.auth=required; the broker refuses the same client without its certificate."""
    client = auth_kafka.ca.client(unique("bridge"), stem=unique("client"), key_password=KEY_PASSWORD)
    settings = {"bootstrap_servers": auth_kafka.bootstrap("MTLS"), "security_protocol": "SSL",
                "ssl_cafile": str(auth_kafka.ca.path), "request_timeout_ms": 10_000}
    with_cert = {**settings, "ssl_certfile": str(client.cert), "ssl_keyfile": str(client.key),
                 "ssl_keyfile_password": KEY_PASSWORD}
    bodies = await roundtrip(with_cert, auth_kafka.broker.create_topic(unique("mtls"), 1))
    assert len(bodies) == 1 and b"auth-1" in bodies[0]
    since = log_size(auth_kafka)
    await refused(settings)
    await broker_log_shows(auth_kafka, since, "Failed authentication with", "SSL handshake failed")
