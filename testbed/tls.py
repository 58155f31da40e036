"""TLS for tests: a throwaway CA with server and client certificates, and a TLS-terminating TCP proxy.

``TestCA(dir).server(names)`` / ``.client(name)`` write PEM files and return their paths; ``.keystore(files)`` and
``.truststore()`` write the same as PKCS12 stores for a Java server (Apache Kafka's SSL listeners). The AMQP
Event Hubs test server speaks plain TCP; a terminating proxy (``TlsProxy``) in front of it gives clients a real
TLS endpoint: server certificate verified against the test CA and the host name, and with
``require_client_cert`` a client certificate signed by the CA (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key (PEM); ``key_password`` when the key is encrypted."""

    cert: Path
    key: Path
    key_password: str | None = None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


class TestCA:
    """A CA valid for one day, writing its files into ``directory`` (``ca.pem``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "bridge test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._now = datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name(name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(minutes=5))
            .not_valid_after(self._now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.path = directory / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, stem: str, common_name: str, names: Sequence[str], usage: x509.ObjectIdentifier,
               key_password: str | None) -> CertFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(minutes=5))
            .not_valid_after(self._now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(_san(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(key_password.encode()) if key_password
            else serialization.NoEncryption()
        )
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        )
        return CertFiles(cert_path, key_path, key_password)

    def server(self, names: Sequence[str] = ("127.0.0.1", "localhost"), stem: str = "server") -> CertFiles:
        """A server certificate for ``names`` (IP addresses and DNS names)."""
        return self._issue(stem, names[0], names, ExtendedKeyUsageOID.SERVER_AUTH, None)

    def client(self, common_name: str = "bridge", stem: str = "client", key_password: str | None = None) -> CertFiles:
        """A client certificate (mutual TLS), its key optionally encrypted with ``key_password``."""
        return self._issue(stem, common_name, (), ExtendedKeyUsageOID.CLIENT_AUTH, key_password)

    def keystore(self, files: CertFiles, password: str) -> Path:
        """``files`` (certificate and key) as a PKCS12 keystore protected by ``password``, next to them."""
        key = serialization.load_pem_private_key(
            files.key.read_bytes(), files.key_password.encode() if files.key_password else None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        path = files.cert.with_suffix(".p12")
        encryption = serialization.BestAvailableEncryption(password.encode())
        path.write_bytes(pkcs12.serialize_key_and_certificates(b"server", key, cert, [self.cert], encryption))
        return path

    def truststore(self, password: str) -> Path:
        """This CA's certificate as a PKCS12 truststore Java trusts (``ca.p12``)."""
        path = self.directory / "ca.p12"
        entry = pkcs12.PKCS12Certificate(self.cert, b"ca")
        path.write_bytes(pkcs12.serialize_java_truststore([entry], serialization.BestAvailableEncryption(
            password.encode())))
        return path

    def server_context(self, files: CertFiles, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server-side context presenting ``files``; with ``require_client_cert``, mutual TLS on this CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(files.cert, files.key, files.key_password)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.path)
        return ctx


class RelayServer:
    """A TCP server on ``127.0.0.1:port`` (TLS with ``ssl``) whose connections ``serve`` relays to ``target``;
    subclasses decide what happens before the byte-for-byte relay."""

    def __init__(self, port: int, target: tuple[str, int], ssl: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.target = target
        self.ssl = ssl
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ssl)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        await self.relay(reader, writer, up_reader, up_writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await self.serve(reader, writer, up_reader, up_writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            if up_writer is not None:
                up_writer.close()
            self._tasks.discard(task)


class TlsProxy(RelayServer):
    """A TLS-terminating proxy on ``127.0.0.1:port`` forwarding plain TCP to ``target``, on the running loop.

    ``peers`` records the subject common name of each verified client certificate (mutual TLS).
    """

    def __init__(self, port: int, target: tuple[str, int], ctx: ssl.SSLContext) -> None:
        super().__init__(port, target, ctx)
        self.peers: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        self.peers.append(value)
        await self.relay(reader, writer, up_reader, up_writer)
