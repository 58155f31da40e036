"""Apache Kafka checking client authentication itself: one node with a listener per mechanism.

``secured_kafka(directory)`` configures (does not start) an ``ApacheKafka`` with, besides PLAINTEXT (inter-broker
and controller traffic, test setup):

- ``SCRAM``: ``SASL_PLAINTEXT``, SCRAM-SHA-512 only; the users (``SecuredKafka.scram_users``) are created when the
  data directory is formatted (``StorageTool format --add-scram``).
- ``OAUTH``: ``SASL_SSL``, OAUTHBEARER only, validated by the broker (``OAuthBearerValidatorCallbackHandler``):
  RS256 signature against a JWKS file of a ``TokenSigner`` (``kid``), ``exp``, ``iat``, ``sub``, the expected
  audience and issuer (Entra ID's, ``testbed.entra.ISSUER``). ``connections.max.reauth.ms`` makes the session of
  a connection end when its token expires: a client that does not re-authenticate (KIP-368; aiokafka does not)
  is disconnected the first time it uses the connection afterwards, and must connect again with a new token.
- ``MTLS``: ``SSL`` with ``ssl.client.auth=required``: a client certificate from the test CA is needed.
- ``TLS``: ``SSL``, server certificate only.

The SSL listeners present a server certificate for ``127.0.0.1`` from ``SecuredKafka.ca`` (PKCS12 stores).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from testbed.apache_kafka import ApacheKafka, Listener
from testbed.entra import ISSUER, TokenSigner
from testbed.tls import TestCA

OAUTH_AUDIENCE = "https://kafka.bridge.test"
"""The audience the OAUTH listener expects; the bridge asks for it with scope ``OAUTH_SCOPE``."""
OAUTH_SCOPE = f"{OAUTH_AUDIENCE}/.default"
SCRAM_USER = "bridge"

_OAUTH = "org.apache.kafka.common.security.oauthbearer."
ALLOWED_URLS = "org.apache.kafka.sasl.oauthbearer.allowed.urls"
"""Since Kafka 4.0 the broker reads a JWKS (or token) URL only when this JVM system property lists it."""


@dataclass
class SecuredKafka:
    """The broker and what its clients need: the CA, the token signer, the SCRAM users' passwords."""

    broker: ApacheKafka
    ca: TestCA
    signer: TokenSigner
    scram_users: dict[str, str]

    def bootstrap(self, listener: str) -> str:
        """``host:port`` of listener ``SCRAM``, ``OAUTH``, ``MTLS`` or ``TLS``."""
        return self.broker.listener_bootstrap(listener)


def oauth_listener(jwks_url: str, audience: str, keystore: dict[str, str]) -> Listener:
    """``SASL_SSL`` with OAUTHBEARER validated against the JWKS at ``jwks_url`` (also needs ``ALLOWED_URLS``)."""
    mech = "oauthbearer."
    return Listener("OAUTH", "SASL_SSL", {
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        mech + "sasl.jaas.config": _OAUTH + "OAuthBearerLoginModule required;",
        mech + "sasl.server.callback.handler.class": _OAUTH + "OAuthBearerValidatorCallbackHandler",
        mech + "sasl.oauthbearer.jwks.endpoint.url": jwks_url,
        mech + "sasl.oauthbearer.expected.audience": audience,
        mech + "sasl.oauthbearer.expected.issuer": ISSUER,
        # the session lasts at most until the token expires (and 10 minutes in any case)
        mech + "connections.max.reauth.ms": "600000",
        **keystore,
    })


def secured_kafka(directory: Path, *, audience: str = OAUTH_AUDIENCE, heap_mb: int = 384) -> SecuredKafka:
    """An ``ApacheKafka`` (not started) with the ``SCRAM``, ``OAUTH``, ``MTLS`` and ``TLS`` listeners; its
    certificates, stores and JWKS are written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA(directory / "tls")
    password = secrets.token_hex(12)
    keystore = {"ssl.keystore.type": "PKCS12", "ssl.keystore.location": str(ca.keystore(ca.server(), password)),
                "ssl.keystore.password": password}
    truststore = {"ssl.truststore.type": "PKCS12", "ssl.truststore.location": str(ca.truststore(password)),
                  "ssl.truststore.password": password}
    signer = TokenSigner()
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps(signer.jwks()))
    jwks_url = jwks.resolve().as_uri()
    users = {SCRAM_USER: secrets.token_urlsafe(12)}
    listeners = [
        Listener("SCRAM", "SASL_PLAINTEXT", {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        }),
        oauth_listener(jwks_url, audience, keystore),
        Listener("MTLS", "SSL", {"ssl.client.auth": "required", **keystore, **truststore}),
        Listener("TLS", "SSL", keystore),
    ]
    (directory / "broker").mkdir(exist_ok=True)
    broker = ApacheKafka(log_dir=directory / "broker", heap_mb=heap_mb, listeners=listeners, scram_users=users,
                         jvm_properties={ALLOWED_URLS: jwks_url})
    return SecuredKafka(broker, ca, signer, users)
