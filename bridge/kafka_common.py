"""Kafka client settings shared by the Kafka source and sink: bootstrap servers, TLS and SASL.

One pydantic model (``KafkaClientSettings``) carries the connection and security fields; source and sink
configs inherit it. ``client_kwargs`` turns it into aiokafka constructor arguments. Covers:

- plain Kafka (``PLAINTEXT``), TLS (``SSL``, optional client certificate for mutual TLS);
- Azure Event Hubs' Kafka endpoint: ``bootstrap_servers: <ns>.servicebus.windows.net:9093``,
  ``security_protocol: SASL_SSL``, ``sasl_mechanism: PLAIN``, ``sasl_username: $ConnectionString``,
  ``sasl_password: <connection string>`` (see ``event_hubs_settings``);
- Amazon MSK: ``SASL_SSL`` + ``SCRAM-SHA-512`` (or mutual TLS with ``SSL``); ``OAUTHBEARER`` takes a static
  token (``sasl_oauth_token``) or a token provider passed in code (``client_kwargs(token_provider=...)``),
  e.g. one built on ``aws-msk-iam-sasl-signer-python`` for MSK IAM.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from aiokafka.abc import AbstractTokenProvider
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

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

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "ml-event-bridge"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauth_token: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int = 40_000

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
                if provider is None and self.sasl_oauth_token is not None:
                    provider = StaticTokenProvider(self.sasl_oauth_token.get_secret_value())
                if provider is None:
                    raise ValueError("OAUTHBEARER needs sasl_oauth_token or a token provider")
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
