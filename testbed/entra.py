"""Microsoft Entra ID stand-ins for tests: JWT-shaped access tokens, a token credential that hands them out,
and a local managed-identity endpoint (the App Service protocol that ``azure-identity``'s
``ManagedIdentityCredential``, and so ``DefaultAzureCredential``, use when ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` are set).

By default the tokens are not signed by anyone (the signature part is a fixed string): the test servers decide
by the exact token (the Event Hubs AMQP server's ``accepted_jwts``) or by its claims (azurite's ``--oauth basic``
checks ``iss``, ``aud``, ``nbf``/``exp``/``iat`` but no signature). A ``TokenSigner`` (an RSA key and its JWKS)
makes real RS256 tokens instead, for a verifier that checks signatures (Apache Kafka's OAUTHBEARER validator):
``ManagedIdentityEndpoint(signer=...)`` hands those out.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TENANT = "72f988bf-0000-0000-0000-000000000001"
ISSUER = f"https://sts.windows.net/{TENANT}/"
EVENTHUBS_AUDIENCE = "https://eventhubs.azure.net"
STORAGE_AUDIENCE = "https://storage.azure.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenSigner:
    """An RSA key (``kid``) that signs tokens RS256, and the JWKS a verifier needs to check them."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or f"test-{secrets.token_hex(4)}"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (RFC 7517)."""
        numbers = self._key.public_key().public_numbers()

        def b64int(value: int) -> str:
            return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": b64int(numbers.n),
                          "e": b64int(numbers.e)}]}


def jwt(claims: dict[str, Any], signer: TokenSigner | None = None) -> str:
    """A JWT carrying ``claims``: signed by ``signer``, else JWT-shaped only (header RS256, signature not
    verifiable)."""
    if signer is not None:
        return signer.sign(claims)
    header = {"typ": "JWT", "alg": "RS256", "kid": "test"}
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(b"not-signed")))


def entra_token(audience: str, lifetime: float = 3600.0, *, now: float | None = None,
                signer: TokenSigner | None = None, **extra: Any) -> str:
    """An access token shaped like Entra ID's for ``audience`` (``aud``, ``iss``, ``sub``, ``nbf``/``iat``/``exp``),
    signed by ``signer`` when given. A negative ``lifetime`` gives a token that expired that long ago."""
    t = int(time.time() if now is None else now)
    oid, issued = str(uuid.uuid4()), t + min(0, int(lifetime)) - 60  # an expired token was issued before it expired
    claims = {"aud": audience, "iss": ISSUER, "iat": issued, "nbf": issued, "exp": t + int(lifetime), "oid": oid,
              "sub": oid, "tid": TENANT, "jti": secrets.token_hex(8), **extra}
    return jwt(claims, signer)


def audience_of(scope: str) -> str:
    """``https://eventhubs.azure.net//.default`` -> ``https://eventhubs.azure.net``."""
    return scope.removesuffix("/.default").rstrip("/")


@dataclass
class TestCredential:
    """An async token credential issuing a fresh Entra-shaped token per call for the scope's audience (or
    ``fixed`` tokens per audience); ``issued`` records (scope, token) in order."""

    __test__ = False

    lifetime: float = 3600.0
    fixed: dict[str, str] = field(default_factory=dict)
    issued: list[tuple[str, str]] = field(default_factory=list)
    closed: bool = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        scope = scopes[0]
        audience = audience_of(scope)
        token = self.fixed.get(audience) or entra_token(audience, self.lifetime)
        self.issued.append((scope, token))
        return AccessToken(token, int(time.time() + self.lifetime))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> TestCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ManagedIdentityEndpoint:
    """A local managed-identity endpoint (App Service protocol, ``api-version=2019-08-01``): answers
    ``GET ?resource=R`` carrying the ``X-IDENTITY-HEADER`` secret with a token for audience R (``lifetime``
    seconds, signed by ``signer`` when set; both may change between requests). ``env`` gives the variables that
    make ``ManagedIdentityCredential`` / ``DefaultAzureCredential`` use it."""

    def __init__(self, lifetime: float = 3600.0, signer: TokenSigner | None = None) -> None:
        self.lifetime = lifetime
        self.signer = signer
        self.secret = secrets.token_hex(16)
        self.issued: list[tuple[str, str]] = []  # (resource, token)
        self.on_issue: list[Callable[[str, str], None]] = []  # called with (resource, token) before answering
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.secret:
            self.refused += 1
            return web.json_response({"error": "invalid identity header"}, status=401)
        resource = request.query.get("resource", "")
        now = time.time()
        token = entra_token(audience_of(resource), self.lifetime, now=now, signer=self.signer)
        self.issued.append((resource, token))
        for listener in self.on_issue:
            listener(resource, token)
        return web.json_response({"access_token": token, "expires_on": str(int(now + self.lifetime)),
                                  "resource": resource, "token_type": "Bearer"})

    async def start(self) -> ManagedIdentityEndpoint:
        app = web.Application()
        app.router.add_get("/msi/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/msi/token"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def tokens_for(self, audience: str) -> list[str]:
        return [t for r, t in self.issued if audience_of(r) == audience]
