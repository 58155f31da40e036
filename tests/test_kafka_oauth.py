"""OAUTHBEARER token providers: refresh before expiry, one fetch for concurrent connections, no token in
errors or reprs; the Azure scope and MSK region defaults; an MSK IAM token signed with IRSA credentials from
moto's STS; and the config rules (bearer tokens only over SASL_SSL)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiokafka.conn
import pytest
from pydantic import ValidationError

from bridge.kafka_common import KafkaClientSettings, StaticTokenProvider
from bridge.kafka_oauth import (
    RefreshingTokenProvider,
    Rfc7628OAuthAuthenticator,
    SaslOAuthConfig,
    build_token_provider,
    decode_msk_token,
    msk_region,
)
from testbed.recorder import RecordingProxy
from tests.sources.test_sqs_identity import ROLE_ARN, irsa_env, recorder  # noqa: F401 (fixtures)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_are_cached_and_refreshed_before_they_expire() -> None:
    """A token is reused until it is within the refresh margin of its expiry, then fetched anew."""
    clock = Clock()
    issued: list[str] = []

    async def fetch() -> tuple[str, float]:
        issued.append(f"token-{len(issued)}")
        return issued[-1], clock.now + 3600

    provider = RefreshingTokenProvider("test", fetch, refresh_margin=300, clock=clock)
    assert await provider.token() == "token-0"
    clock.now += 3000  # 600 s left: still fresh
    assert await provider.token() == "token-0"
    clock.now += 301  # 299 s left: inside the margin
    assert await provider.token() == "token-1"
    assert provider.fetches == 2 and "token-1" not in repr(provider) and "token-1" not in str(provider)


async def test_concurrent_connections_share_one_fetch_and_failures_hide_nothing() -> None:
    """Ten connections authenticating at once cause one fetch; a failing fetch raises without the token and the
    next call tries again."""
    calls = 0
    fail = False

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        if fail:
            raise OSError("identity endpoint down")
        return "secret-token-value", time.time() + 3600

    provider = RefreshingTokenProvider("test", fetch, refresh_margin=300)
    assert set(await asyncio.gather(*(provider.token() for _ in range(10)))) == {"secret-token-value"}
    assert calls == 1
    failing = RefreshingTokenProvider("test", fetch, refresh_margin=300)
    fail = True
    with pytest.raises(RuntimeError, match="identity endpoint down") as info:
        await failing.token()
    assert "secret-token-value" not in str(info.value)
    fail = False
    assert await failing.token() == "secret-token-value"


def test_scope_and_region_defaults_come_from_the_bootstrap_host() -> None:
    """Azure's default scope is https://<first bootstrap host>/.default; MSK's region is read from its host."""
    assert msk_region("b-1.ml.abc123.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.x:9098") == "eu-west-1"
    assert msk_region("kafka.internal:9092") is None
    with pytest.raises(ValueError, match="region"):
        build_token_provider(SaslOAuthConfig(provider="aws_msk_iam"), "kafka.internal:9092")
    provider = build_token_provider(SaslOAuthConfig(provider="azure"), "ns.servicebus.windows.net:9093")
    assert provider.name == "azure"


def test_bearer_tokens_need_sasl_ssl_and_one_source_of_tokens() -> None:
    """sasl_oauth is refused without SASL_SSL + OAUTHBEARER, and together with a static token."""
    base: dict[str, Any] = {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}
    ok = KafkaClientSettings.model_validate({**base, "sasl_oauth": {"provider": "azure"}})
    assert isinstance(ok.client_kwargs()["sasl_oauth_token_provider"], RefreshingTokenProvider)
    with pytest.raises(ValidationError, match="SASL_SSL"):
        KafkaClientSettings.model_validate({**base, "security_protocol": "SASL_PLAINTEXT",
                                            "sasl_oauth": {"provider": "azure"}})
    with pytest.raises(ValidationError, match="not both"):
        KafkaClientSettings.model_validate({**base, "sasl_oauth": {"provider": "azure"}, "sasl_oauth_token": "t"})
    with pytest.raises(ValidationError, match="aws_msk_iam"):
        SaslOAuthConfig.model_validate({"provider": "azure", "region": "us-east-1"})


async def test_msk_iam_token_is_signed_with_irsa_credentials(
    irsa_env: str, recorder: RecordingProxy,  # noqa: F811
) -> None:
    """provider aws_msk_iam with only IRSA's environment: the signer assumes the role at (moto's) STS and the
    token is a kafka-cluster:Connect URL presigned for 15 minutes with the temporary key STS returned."""
    provider = build_token_provider(SaslOAuthConfig(provider="aws_msk_iam"),
                                    "b-1.ml.abc123.c2.kafka.us-east-1.amazonaws.com:9098")
    token = await provider.token()
    url = urlsplit(decode_msk_token(token))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.hostname == "kafka.us-east-1.amazonaws.com"
    assert query["Action"] == "kafka-cluster:Connect" and query["X-Amz-Expires"] == "900"
    (assume,) = recorder.calls("AssumeRoleWithWebIdentity")
    assert assume.form["RoleArn"] == ROLE_ARN and assume.form["WebIdentityToken"] == irsa_env
    temporary = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", assume.response)
    assert temporary is not None
    assert query["X-Amz-Credential"].startswith(temporary.group(1).decode() + "/")
    assert query["X-Amz-Credential"].endswith("/us-east-1/kafka-cluster/aws4_request")
    assert "X-Amz-Security-Token" in query and "X-Amz-Signature" in query
    assert provider.fetches == 1 and await provider.token() == token  # cached: 900 s life, 300 s margin


async def test_a_refused_token_ends_the_exchange_with_the_brokers_error() -> None:
    """aiokafka's OAUTHBEARER client answers a broker's RFC 7628 error challenge with the \\x01 that makes the broker
    send its error code, once, instead of taking the challenge for success."""
    assert aiokafka.conn.OAuthAuthenticator is Rfc7628OAuthAuthenticator
    auth = Rfc7628OAuthAuthenticator(sasl_oauth_token_provider=StaticTokenProvider("tok"))
    assert await auth.step(None) == (b"n,,\x01auth=Bearer tok\x01\x01", True)
    assert await auth.step(b'{"status":"invalid_token"}') == (b"\x01", True)
    assert await auth.step(b'{"status":"invalid_token"}') is None
    accepted = Rfc7628OAuthAuthenticator(sasl_oauth_token_provider=StaticTokenProvider("tok"))
    await accepted.step(None)
    assert await accepted.step(b"") is None  # an empty server message is success: nothing more to send
