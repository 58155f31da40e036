"""A SASL/OAUTHBEARER front for the test broker: authenticates Kafka clients itself, then relays to tansu.

tansu 0.6 validates OAUTHBEARER tokens in ways the tests cannot configure, so this front plays the broker's
part of SASL: it forwards ``ApiVersions`` (so the client sees tansu's versions, which include SaslHandshake and
SaslAuthenticate), answers ``SaslHandshake`` (mechanism OAUTHBEARER only) and ``SaslAuthenticate`` (the
client's ``n,,\\x01auth=Bearer <token>\\x01\\x01`` message, RFC 7628) with ``check(token)``: accepted, the
connection is relayed byte for byte to tansu; refused, the client gets error 58 (SaslAuthenticationFailed) and
the connection closes. Any other request before authentication closes the connection, as a broker with SASL
would. With ``ssl`` it also terminates TLS (``SASL_SSL``). Start the broker with ``advertised`` = this front's
address so metadata sends clients back through it. ``tokens`` records every token presented.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import struct
from collections.abc import Callable

from testbed.tls import RelayServer

SASL_HANDSHAKE = 17
API_VERSIONS = 18
SASL_AUTHENTICATE = 36
SASL_AUTHENTICATION_FAILED = 58
UNSUPPORTED_SASL_MECHANISM = 33


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def bearer_token(auth_bytes: bytes) -> str | None:
    """The token of an OAUTHBEARER client-first message, or ``None`` when malformed."""
    text = auth_bytes.decode(errors="replace")
    if not text.startswith("n,"):
        return None
    for part in text.split("\x01"):
        if part.startswith("auth=Bearer "):
            return part[len("auth=Bearer "):]
    return None


class SaslOAuthFront(RelayServer):
    """``127.0.0.1:port`` authenticating OAUTHBEARER with ``check`` and relaying to ``target`` afterwards."""

    def __init__(self, port: int, target: tuple[str, int], check: Callable[[str], bool],
                 ssl: ssl_module.SSLContext | None = None) -> None:
        super().__init__(port, target, ssl)
        self.check = check
        self.tokens: list[tuple[str, bool]] = []  # (token, accepted)

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        size = struct.unpack(">i", await reader.readexactly(4))[0]
        return await reader.readexactly(size)

    @staticmethod
    def _send(writer: asyncio.StreamWriter, correlation_id: int, body: bytes) -> None:
        payload = struct.pack(">i", correlation_id) + body
        writer.write(struct.pack(">i", len(payload)) + payload)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        while True:
            frame = await self._frame(reader)
            api_key, api_version, correlation_id = struct.unpack(">hhi", frame[:8])
            if api_key == API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await self._frame(up_reader)
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
                continue
            client_id_len = struct.unpack(">h", frame[8:10])[0]
            body = frame[10 + max(client_id_len, 0):]
            if api_key == SASL_HANDSHAKE:
                mechanism_len = struct.unpack(">h", body[:2])[0]
                mechanism = body[2:2 + mechanism_len].decode()
                error = 0 if mechanism == "OAUTHBEARER" else UNSUPPORTED_SASL_MECHANISM
                self._send(writer, correlation_id, struct.pack(">hi", error, 1) + _string("OAUTHBEARER"))
                await writer.drain()
                if error:
                    return False
                continue
            if api_key == SASL_AUTHENTICATE and api_version in (0, 1):
                auth_len = struct.unpack(">i", body[:4])[0]
                token = bearer_token(body[4:4 + auth_len])
                accepted = token is not None and self.check(token)
                self.tokens.append((token or "", accepted))
                error, message = (0, None) if accepted else (SASL_AUTHENTICATION_FAILED, "token refused")
                answer = struct.pack(">h", error) + _string(message) + struct.pack(">i", 0)
                if api_version == 1:
                    answer += struct.pack(">q", 3_600_000 if accepted else 0)
                self._send(writer, correlation_id, answer)
                await writer.drain()
                return accepted
            return False  # anything else before authentication: hang up

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        try:
            authenticated = await self._authenticate(reader, writer, up_reader, up_writer)
        except (struct.error, UnicodeDecodeError):
            return
        if authenticated:
            await self.relay(reader, writer, up_reader, up_writer)
