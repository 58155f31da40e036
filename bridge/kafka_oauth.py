"""SASL/OAUTHBEARER token providers for the Kafka source and sink: Microsoft Entra ID (Azure Event Hubs' Kafka
endpoint) and Amazon MSK IAM (``aws-msk-iam-sasl-signer-python``).

``SaslOAuthConfig`` (``sasl_oauth:`` on a Kafka source or sink) chooses the provider; ``build_token_provider``
returns an aiokafka token provider. aiokafka asks for a token each time it authenticates a connection; the
provider caches it and fetches a new one once the cached token is within ``refresh_margin_seconds`` of its
expiry, so a connection never authenticates with a token about to expire. Concurrent connections share one
fetch. Tokens never reach a log line, an exception message or a ``repr``.

Importing this module also completes aiokafka's OAUTHBEARER exchange with RFC 7628's failure path
(``Rfc7628OAuthAuthenticator``), so a token the broker refuses fails the connection with the broker's
SaslAuthenticationFailed instead of passing for a success.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiokafka.conn
import structlog
from aiokafka.abc import AbstractTokenProvider
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge.azure_auth import AzureCredentialConfig, build_credential
from bridge.logs import scrub

log = structlog.get_logger(__name__)

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (token, expires_at as time.time())


class Rfc7628OAuthAuthenticator(aiokafka.conn.OAuthAuthenticator):  # type: ignore[misc]
    """aiokafka's OAUTHBEARER client plus the failure path of RFC 7628 (section 3.2.3) that aiokafka 0.14 lacks.

    A Kafka broker refusing a token does not answer with an error code but with an error challenge
    (``{"status":"invalid_token"}``) and waits for the client's ``\\x01``; only then does it end the exchange with
    SaslAuthenticationFailed (error 58), which aiokafka raises and closes the connection on. aiokafka stops after
    sending the token, so it took the challenge for success and the refusal surfaced later as empty metadata
    (an unknown topic)."""

    _acknowledged = False

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._token_sent and payload and not self._acknowledged:
            self._acknowledged = True
            return b"\x01", True
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result


aiokafka.conn.OAuthAuthenticator = Rfc7628OAuthAuthenticator  # AIOKafkaConnection looks the class up per connection


class SaslOAuthConfig(BaseModel):
    """Where OAUTHBEARER tokens come from."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["azure", "aws_msk_iam"] = Field(
        description="azure: Entra ID token (Event Hubs' Kafka endpoint); aws_msk_iam: MSK IAM auth token "
        "signed with the AWS default credential chain (IRSA included)"
    )
    scope: str | None = Field(
        None, description="azure: token scope (default https://<first bootstrap host>/.default)"
    )
    credential: AzureCredentialConfig = Field(
        default_factory=AzureCredentialConfig, description="azure: which Entra ID credential"
    )
    region: str | None = Field(
        None, description="aws_msk_iam: the cluster's region (default: from the bootstrap host, else AWS_REGION)"
    )
    role_arn: str | None = Field(
        None, description="aws_msk_iam: assume this role first (default: the chain's own identity)"
    )
    refresh_margin_seconds: float = Field(
        300.0, ge=0, description="fetch a new token when the cached one expires within this many seconds"
    )

    @model_validator(mode="after")
    def _fits_provider(self) -> SaslOAuthConfig:
        if self.provider == "azure" and (self.region or self.role_arn):
            raise ValueError("region and role_arn are for provider aws_msk_iam")
        if self.provider == "aws_msk_iam" and self.scope:
            raise ValueError("scope is for provider azure")
        return self


class RefreshingTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """Caches the token of ``fetch`` and fetches again before it expires; one fetch at a time."""

    def __init__(self, name: str, fetch: Fetch, refresh_margin: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._fetch = fetch
        self._margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, expires_at={self._expires_at:.0f})"

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self._margin

    async def token(self) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                try:
                    token, expires_at = await self._fetch()
                except Exception as exc:
                    error = scrub(f"{type(exc).__name__}: {exc}")[:500]
                    log.warning("kafka.oauth_token_failed", provider=self.name, error=error)
                    raise RuntimeError(f"OAUTHBEARER token from {self.name} failed: {error}") from exc
                self._token, self._expires_at = token, expires_at
                self.fetches += 1
                log.info("kafka.oauth_token_fetched", provider=self.name,
                         expires_in=round(expires_at - self._clock()))
            assert self._token is not None
            return self._token


def _first_host(bootstrap_servers: str) -> str:
    first = bootstrap_servers.split(",")[0].strip()
    return first.rsplit(":", 1)[0] if first.count(":") == 1 else first


def azure_fetch(scope: str, credential: AzureCredentialConfig, make_credential: Callable[[], Any] | None = None
                ) -> Fetch:
    """Fetch an Entra ID token for ``scope``; a credential is opened for each fetch and closed after it (fetches
    are rare: once per token lifetime), so nothing is left open when the Kafka client stops."""

    async def fetch() -> tuple[str, float]:
        cred = make_credential() if make_credential is not None else build_credential(credential)
        try:
            access = await cred.get_token(scope)
        finally:
            await cred.close()
        return access.token, float(access.expires_on)

    return fetch


def msk_region(bootstrap_servers: str) -> str | None:
    """The region of an MSK bootstrap host (``b-1.name.abc.c2.kafka.us-east-1.amazonaws.com``)."""
    parts = _first_host(bootstrap_servers).split(".")
    if "kafka" in parts and parts[-1] == "com" and parts[-2] == "amazonaws":
        index = parts.index("kafka")
        if index + 1 < len(parts) - 2:
            return parts[index + 1]
    return None


def msk_fetch(region: str, role_arn: str | None) -> Fetch:
    """Fetch an MSK IAM auth token (a SigV4-presigned ``kafka-cluster:Connect`` URL, valid 15 minutes) with
    ``aws-msk-iam-sasl-signer-python``, in a thread (it resolves credentials and signs synchronously)."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    def generate() -> tuple[str, float]:
        if role_arn:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_role_arn(region, role_arn)
        else:
            token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000.0

    async def fetch() -> tuple[str, float]:
        return await asyncio.to_thread(generate)

    return fetch


def decode_msk_token(token: str) -> str:
    """The presigned URL inside an MSK IAM token (for diagnostics and tests; it carries no secret key)."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def build_token_provider(cfg: SaslOAuthConfig, bootstrap_servers: str) -> RefreshingTokenProvider:
    """The aiokafka token provider for ``cfg`` on a cluster reached at ``bootstrap_servers``."""
    if cfg.provider == "azure":
        scope = cfg.scope or f"https://{_first_host(bootstrap_servers)}/.default"
        return RefreshingTokenProvider("azure", azure_fetch(scope, cfg.credential), cfg.refresh_margin_seconds)
    region = cfg.region or msk_region(bootstrap_servers) or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ValueError("sasl_oauth.region is needed: the bootstrap host names no region and AWS_REGION is unset")
    return RefreshingTokenProvider("aws_msk_iam", msk_fetch(region, cfg.role_arn), cfg.refresh_margin_seconds)
