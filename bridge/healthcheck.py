"""Container health probe: GET the daemon's /healthz on the port its config serves, never through a proxy.

    python -m bridge.healthcheck [--config FILE] [--url URL] [--timeout SECONDS]

Used by the image's HEALTHCHECK and the compose healthcheck. The URL is ``--url``, else ``$BRIDGE_HEALTH_URL``,
else built from the ``http`` section of the config (``--config``, else /etc/bridge/config.yaml when it exists,
else the built-in default 0.0.0.0:8080, ``${VAR:-default}`` references expanded as the daemon does); a
wildcard listen address is probed on loopback. Exit 0 on a 2xx answer, 1 otherwise, with the reason on stderr.

It speaks ``http.client`` directly: ``http_proxy``/``HTTP_PROXY`` are never consulted (urllib would send the
probe to a corporate proxy, which cannot reach the container's loopback). It reads the YAML without the
pydantic models, so a probe costs a fraction of a second.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bridge.envsubst import expand

DEFAULT_CONFIG = Path("/etc/bridge/config.yaml")
DEFAULT_HOST, DEFAULT_PORT = "0.0.0.0", 8080  # bridge.config.HttpConfig's defaults
_WILDCARD = {"", "0.0.0.0", "::", "[::]"}


class ProbeError(Exception):
    """The probe could not tell where the daemon listens."""


def config_path(arg: str | None) -> Path | None:
    """The config file to read the port from, or None for the built-in default."""
    if arg:
        return Path(arg)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def health_url(path: Path | None, env: Mapping[str, str]) -> str:
    """``http://HOST:PORT/healthz`` of the daemon that serves the config at ``path``."""
    http: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ProbeError(f"cannot read {path}: {exc}") from None
        http = (data.get("http") or {}) if isinstance(data, dict) else {}
        if not isinstance(http, dict):
            raise ProbeError(f"{path}: http must be a mapping")
    host = expand(str(http.get("host", DEFAULT_HOST)), env).strip()
    port_text = expand(str(http.get("port", DEFAULT_PORT)), env).strip()
    try:
        port = int(port_text)
    except ValueError:
        raise ProbeError(f"http.port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ProbeError(f"http.port {port} names no fixed port: set BRIDGE_HEALTH_URL")
    if host in _WILDCARD:
        host = "127.0.0.1" if ":" not in host else "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def probe(url: str, timeout: float) -> int:
    """GET ``url`` without any proxy; return the HTTP status."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError(f"not an http URL: {url}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"User-Agent": "bridge-healthcheck"})
        response = conn.getresponse()
        response.read()
        return int(response.status)
    finally:
        conn.close()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m bridge.healthcheck",
                                     description="exit 0 when the bridge daemon's /healthz answers 2xx")
    parser.add_argument("--config", help=f"the daemon's config file (default: {DEFAULT_CONFIG} if it exists)")
    parser.add_argument("--url", help="probe this URL instead (default: $BRIDGE_HEALTH_URL or from the config)")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        url = args.url or env.get("BRIDGE_HEALTH_URL") or health_url(config_path(args.config), env)
    except ProbeError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    try:
        status = probe(url, args.timeout)
    except (ProbeError, OSError, http.client.HTTPException) as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if 200 <= status < 300:
        return 0
    print(f"unhealthy: {url} answered {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
