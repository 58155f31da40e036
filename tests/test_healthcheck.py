"""The container health probe (python -m bridge.healthcheck): the port comes from the daemon's config, the request
goes straight to the daemon even with http_proxy set, and anything but a 2xx answer is unhealthy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import HttpConfig
from bridge.healthcheck import DEFAULT_HOST, DEFAULT_PORT, ProbeError, health_url
from testbed.process import BridgeProcess
from testbed.servers import RefusedPort


@pytest.mark.parametrize(("yaml_text", "env", "url"), [
    (None, {}, "http://127.0.0.1:8080/healthz"),
    ("sources: []\n", {}, "http://127.0.0.1:8080/healthz"),
    ("http: {port: 9100}\n", {}, "http://127.0.0.1:9100/healthz"),
    ("http: {host: 0.0.0.0, port: '${PORT:-9200}'}\n", {}, "http://127.0.0.1:9200/healthz"),
    ("http: {host: 0.0.0.0, port: '${PORT:-9200}'}\n", {"PORT": "9300"}, "http://127.0.0.1:9300/healthz"),
    ("http: {host: 10.1.2.3, port: 81}\n", {}, "http://10.1.2.3:81/healthz"),
    ("http: {host: '::', port: 82}\n", {}, "http://[::1]:82/healthz"),
    ("http: {host: 'fd00::5', port: 83}\n", {}, "http://[fd00::5]:83/healthz"),
])
def test_url_follows_the_configs_http_section(
    tmp_path: Path, yaml_text: str | None, env: dict[str, str], url: str
) -> None:
    """The probed URL is the config's http host and port (${VAR:-default} expanded), a wildcard host on loopback."""
    path = None
    if yaml_text is not None:
        path = tmp_path / "config.yaml"
        path.write_text(yaml_text)
    assert health_url(path, env) == url


@pytest.mark.parametrize(("yaml_text", "error"), [
    ("http: {port: 0}\n", "names no fixed port"),
    ("http: {port: '${UNSET_PORT}'}\n", "is not a number"),
    ("http: [8080]\n", "must be a mapping"),
    ("http: {port: [\n", "cannot read"),
])
def test_url_errors_name_the_problem(tmp_path: Path, yaml_text: str, error: str) -> None:
    """A config the probe cannot get a fixed port from is an error that says why."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ProbeError, match=error):
        health_url(path, {})


def test_defaults_are_the_daemons() -> None:
    """Without a config the probe assumes exactly the daemon's default listen address."""
    assert (HttpConfig().host, HttpConfig().port) == (DEFAULT_HOST, DEFAULT_PORT)


def _probe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.healthcheck", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_probe_reaches_the_daemon_through_a_configured_http_proxy(tmp_path: Path) -> None:
    """With http_proxy pointing at a dead proxy (where urllib fails), the probe still answers healthy from the
    daemon's config; a non-2xx answer and a stopped daemon are unhealthy (exit 1)."""
    with RefusedPort() as broker_port, RefusedPort() as proxy_port:
        _probe_through_a_dead_proxy(tmp_path, f"127.0.0.1:{broker_port}", f"http://127.0.0.1:{proxy_port}")


def _probe_through_a_dead_proxy(tmp_path: Path, bootstrap: str, proxy: str) -> None:
    # no broker at bootstrap: /healthz answers, /readyz says 503
    cfg: dict[str, Any] = {
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": ["raw"],
                     "group_id": "g"}],
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
    }
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
    env.update(http_proxy=proxy, HTTP_PROXY=proxy)
    with BridgeProcess(cfg, tmp_path) as bridge:
        bridge.wait_http("/healthz", 200)
        config = str(bridge.config_path)
        urllib_probe = subprocess.run(
            [sys.executable, "-c", "import urllib.request, sys; "
             f"urllib.request.urlopen('http://127.0.0.1:{bridge.port}/healthz', timeout=4)"],
            capture_output=True, env=env, timeout=60, check=False)
        assert urllib_probe.returncode != 0  # the proxy really is in the way of urllib
        healthy = _probe("--config", config, env=env)
        assert healthy.returncode == 0, healthy.stderr
        not_ready = _probe("--url", f"http://127.0.0.1:{bridge.port}/readyz", env=env)
        assert not_ready.returncode == 1 and "answered 503" in not_ready.stderr
        assert bridge.terminate() == 0
    gone = _probe("--config", config, env=env)
    assert gone.returncode == 1 and f"127.0.0.1:{bridge.port}/healthz" in gone.stderr
