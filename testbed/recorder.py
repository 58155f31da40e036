"""A recording HTTP reverse proxy: forwards every request to an upstream (moto_server) and keeps what it saw.

Tests point a client's endpoint at it to check what actually travelled: which API actions were called, with
which form fields (``Action=AssumeRoleWithWebIdentity&WebIdentityToken=...``), and which access key signed
each request (the ``Credential=`` of the ``Authorization`` header).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Exchange:
    """One request as forwarded, and the upstream's answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    response: bytes

    @property
    def form(self) -> dict[str, str]:
        """Form fields of a query-protocol request (STS, SQS query API)."""
        return {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}

    @property
    def target(self) -> str:
        """The API action: ``X-Amz-Target`` (JSON protocol) or the form's ``Action``."""
        return self.headers.get("X-Amz-Target") or self.form.get("Action", "")

    @property
    def access_key(self) -> str | None:
        """The access key id that signed the request, if it was signed."""
        m = _CREDENTIAL.search(self.headers.get("Authorization", ""))
        return m.group(1) if m else None


class RecordingProxy:
    """``http://127.0.0.1:<port>`` forwarding to ``upstream``; ``exchanges`` in arrival order."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "content-encoding",
                                                "connection")}
            self.exchanges.append(Exchange(request.method, request.path, dict(request.headers), body,
                                           upstream.status, payload))
            return web.Response(status=upstream.status, body=payload, headers=out_headers)

    async def start(self) -> RecordingProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def calls(self, target: str) -> list[Exchange]:
        """Exchanges whose API action ends with ``target`` (``AssumeRoleWithWebIdentity``, ``ReceiveMessage``)."""
        return [e for e in self.exchanges if e.target.endswith(target)]
