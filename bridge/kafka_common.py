"""Kafka client settings shared by the Kafka source and sink: bootstrap servers, TLS and SASL.

One pydantic model (``KafkaClientSettings``) carries the connection and security fields; source and sink
configs inherit it. ``client_kwargs`` turns it into aiokafka constructor arguments. Covers:

- plain Kafka (``PLAINTEXT``), TLS (``SSL``, optional client certificate for mutual TLS);
- Azure Event Hubs' Kafka endpoint: ``bootstrap_servers: <ns>.servicebus.windows.net:9093``,
  ``security_protocol: SASL_SSL``, ``sasl_mechanism: PLAIN``, ``sasl_username: $ConnectionString``,
  ``sasl_password: <connection string>`` (see ``event_hubs_settings``);
  or, without keys, ``sasl_mechanism: OAUTHBEARER`` with ``sasl_oauth: {provider: azure}`` (Entra ID);
- Amazon MSK: ``SASL_SSL`` + ``SCRAM-SHA-512``, mutual TLS with ``SSL`` + ``ssl_certfile``/``ssl_keyfile``, or
  IAM: ``OAUTHBEARER`` with ``sasl_oauth: {provider: aws_msk_iam}`` (``aws-msk-iam-sasl-signer-python``);
- ``OAUTHBEARER`` also takes a static token (``sasl_oauth_token``) or a provider passed in code
  (``client_kwargs(token_provider=...)``). Providers are in ``bridge.kafka_oauth``.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from aiokafka.abc import AbstractTokenProvider
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from bridge.kafka_oauth import SaslOAuthConfig, build_token_provider

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

EVENT_HUBS_USERNAME = "$ConnectionString"


class StaticTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAUTHBEARER token provider returning one fixed token (from configuration)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


class KafkaClientSettings(BaseModel):
    """Connection and security settings common to every Kafka client of the bridge."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port...]")
    client_id: str = Field("ml-event-bridge", description="Kafka client id")
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    sasl_mechanism: SaslMechanism | None = Field(None, description="PLAIN, SCRAM-SHA-256/512, OAUTHBEARER")
    sasl_username: str | None = Field(None, description="PLAIN/SCRAM user ($ConnectionString for Event Hubs)")
    sasl_password: SecretStr | None = Field(None, description="PLAIN/SCRAM password (use ${VAR})")
    sasl_oauth_token: SecretStr | None = Field(None, description="OAUTHBEARER: a fixed token (use ${VAR})")
    sasl_oauth: SaslOAuthConfig | None = Field(
        None, description="OAUTHBEARER: refreshed tokens from Entra ID (provider azure) or MSK IAM (aws_msk_iam)"
    )
    ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers (default: system CAs)")
    ssl_certfile: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="its private key (PEM; default: inside ssl_certfile)")
    ssl_keyfile_password: SecretStr | None = Field(None, description="password of an encrypted ssl_keyfile")
    ssl_check_hostname: bool = Field(True, description="check the broker certificate's host name")
    request_timeout_ms: int = Field(40_000, description="Kafka request timeout")

    @model_validator(mode="after")
    def _check_security(self) -> KafkaClientSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        password_auth = sasl and self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if password_auth and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile given without ssl_certfile")
        if self.sasl_oauth is not None and self.sasl_oauth_token is not None:
            raise ValueError("give sasl_oauth_token or sasl_oauth, not both")
        if self.sasl_oauth is not None and not (sasl and self.sasl_mechanism == "OAUTHBEARER"):
            raise ValueError("sasl_oauth needs security_protocol SASL_SSL (or SASL_PLAINTEXT) and sasl_mechanism "
                             "OAUTHBEARER")
        if self.sasl_oauth is not None and self.security_protocol != "SASL_SSL":
            raise ValueError("sasl_oauth sends bearer tokens: use security_protocol SASL_SSL")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL / SASL_SSL (system CAs unless ``ssl_cafile``), else None."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        ctx.check_hostname = self.ssl_check_hostname  # the certificate chain is always verified
        if self.ssl_certfile:
            password = self.ssl_keyfile_password.get_secret_value() if self.ssl_keyfile_password else None
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password)
        return ctx

    def client_kwargs(self, token_provider: AbstractTokenProvider | None = None) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaConsumer`` / ``AIOKafkaProducer`` / the admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        ctx = self.ssl_context()
        if ctx is not None:
            kwargs["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL_") and self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                provider = token_provider
                if provider is None and self.sasl_oauth is not None:
                    provider = build_token_provider(self.sasl_oauth, self.bootstrap_servers)
                if provider is None and self.sasl_oauth_token is not None:
                    provider = StaticTokenProvider(self.sasl_oauth_token.get_secret_value())
                if provider is None:
                    raise ValueError("OAUTHBEARER needs sasl_oauth, sasl_oauth_token or a token provider")
                kwargs["sasl_oauth_token_provider"] = provider
            else:
                kwargs["sasl_plain_username"] = self.sasl_username
                kwargs["sasl_plain_password"] = (
                    self.sasl_password.get_secret_value() if self.sasl_password is not None else None
                )
        return kwargs


def event_hubs_settings(namespace: str, connection_string: str) -> dict[str, Any]:
    """Config fields for an Azure Event Hubs namespace's Kafka endpoint (merge into a source/sink config)."""
    host = namespace if "." in namespace else f"{namespace}.servicebus.windows.net"
    return {
        "bootstrap_servers": f"{host}:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_username": EVENT_HUBS_USERNAME,
        "sasl_password": connection_string,
    }
