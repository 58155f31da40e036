"""Microsoft Entra ID stand-ins for tests: JWT-shaped access tokens, a token credential that hands them out,
and a local managed-identity endpoint (the App Service protocol that ``azure-identity``'s
``ManagedIdentityCredential``, and so ``DefaultAzureCredential``, use when ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` are set).

The tokens are not signed by anyone (the signature part is a fixed string): the test servers decide by the
exact token (the Event Hubs AMQP server's ``accepted_jwts``) or by its claims (azurite's ``--oauth basic``
checks ``iss``, ``aud``, ``nbf``/``exp``/``iat`` but no signature).
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

TENANT = "72f988bf-0000-0000-0000-000000000001"
EVENTHUBS_AUDIENCE = "https://eventhubs.azure.net"
STORAGE_AUDIENCE = "https://storage.azure.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token carrying ``claims`` (header RS256, signature not verifiable)."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "test"}
    return ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(b"not-signed")))


def entra_token(audience: str, lifetime: float = 3600.0, *, now: float | None = None, **extra: Any) -> str:
    """An access token shaped like Entra ID's for ``audience`` (``aud``, ``iss``, ``nbf``/``iat``/``exp``)."""
    t = int(time.time() if now is None else now)
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{TENANT}/", "iat": t - 60, "nbf": t - 60,
              "exp": t + int(lifetime), "oid": str(uuid.uuid4()), "tid": TENANT, "jti": secrets.token_hex(8),
              **extra}
    return jwt(claims)


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
    ``GET ?resource=R`` carrying the ``X-IDENTITY-HEADER`` secret with a token for audience R. ``env`` gives
    the variables that make ``ManagedIdentityCredential`` / ``DefaultAzureCredential`` use it."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
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
        token = entra_token(audience_of(resource), self.lifetime)
        self.issued.append((resource, token))
        for listener in self.on_issue:
            listener(resource, token)
        return web.json_response({"access_token": token, "expires_on": str(int(time.time() + self.lifetime)),
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
