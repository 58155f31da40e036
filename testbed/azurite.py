"""Launcher for the Azurite blob storage emulator (checkpoint store of the Event Hubs source in tests/local).

Azurite is installed by ``scripts/install-azurite.sh`` into ``.tools/azurite`` (npm, no global install);
``AZURITE_BLOB`` may point at another ``azurite-blob`` executable. The blob service runs in memory (or in a
given directory), on the given port, with the well-known development account ``devstoreaccount1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import structlog

from testbed.servers import port_open

log = structlog.get_logger(__name__)

ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PREFIX = REPO_ROOT / ".tools" / "azurite"


class AzuriteNotInstalled(RuntimeError):
    """Raised when no azurite-blob executable can be found."""


def connection_string(host: str = "127.0.0.1", port: int = 10000) -> str:
    """The storage connection string of the development account on ``host:port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT_NAME};"
    )


def find_executable() -> str:
    """Locate ``azurite-blob``: ``$AZURITE_BLOB``, then ``.tools/azurite``, then ``PATH``."""
    candidates = [
        os.environ.get("AZURITE_BLOB", ""),
        str(DEFAULT_PREFIX / "node_modules" / ".bin" / "azurite-blob"),
        shutil.which("azurite-blob") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AzuriteNotInstalled(
        "azurite-blob not found: run scripts/install-azurite.sh (installs into .tools/azurite) "
        "or set AZURITE_BLOB to an azurite-blob executable"
    )


_listening = port_open


class Azurite:
    """One azurite blob service process; use ``start()``/``stop()`` or as a context manager."""

    def __init__(
        self, port: int = 10000, host: str = "127.0.0.1", location: str | None = None, in_memory: bool = True,
        *, https: tuple[Path, Path] | None = None, oauth: bool = False,
    ) -> None:
        """``https``: (certificate, key) PEM files to serve HTTPS; ``oauth`` (needs ``https``): accept Entra ID
        bearer tokens (azurite's ``--oauth basic``: it checks ``iss``, ``aud``, ``nbf``/``exp``/``iat``, no
        signature)."""
        if oauth and https is None:
            raise ValueError("azurite accepts bearer tokens over HTTPS only: give https=(cert, key)")
        self.host, self.port = host, port
        self.in_memory = in_memory
        self.https = https
        self.oauth = oauth
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.location = location
        self._process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def account_url(self) -> str:
        """The development account's blob endpoint (``https://`` when serving HTTPS)."""
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.host}:{self.port}/devstoreaccount1"

    @property
    def connection_string(self) -> str:
        """Connection string of the development account on this instance."""
        return connection_string(self.host, self.port)

    def start(self, timeout: float = 30.0) -> Azurite:
        """Start the blob service and wait until it accepts connections."""
        executable = find_executable()
        if _listening(self.host, self.port):
            raise RuntimeError(f"port {self.host}:{self.port} is already in use")
        if self.location is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="azurite-")
            self.location = self._tmp.name
        args = [
            executable,
            "--blobHost", self.host,
            "--blobPort", str(self.port),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ]  # fmt: skip
        if self.https is not None:
            args += ["--cert", str(self.https[0]), "--key", str(self.https[1])]
        if self.oauth:
            args += ["--oauth", "basic"]
        # azurite refuses --location together with --inMemoryPersistence; the temp dir is still the cwd.
        args += ["--inMemoryPersistence"] if self.in_memory else ["--location", self.location]
        self._log = tempfile.NamedTemporaryFile(prefix="azurite-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.location)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"azurite exited with {self._process.returncode}: {self.output()}")
            if _listening(self.host, self.port):
                log.info("azurite.listening", host=self.host, port=self.port)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite did not listen on {self.host}:{self.port} within {timeout}s")

    def output(self) -> str:
        """What azurite printed so far (for error messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-2000:]

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (kill after ``timeout``) and remove the temporary location."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.location = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
