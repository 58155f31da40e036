"""Root test configuration: broker fixtures live in tests/fixtures and are loaded as plugins.

Brokers are real processes started by session fixtures (tansu, moto_server, the AMQP Event Hubs test
server, azurite); Redis is the machine's own server on 127.0.0.1:6379 (or ``BRIDGE_TEST_REDIS_URL``),
and if none answers, a private ``redis-server`` is started. A missing broker fails the test, never skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.servers import free_port, port_open

pytest_plugins = [
    "tests.fixtures.kafka_aws",
    "tests.fixtures.azure",
    "tests.fixtures.prometheus",
    "tests.fixtures.docker",
    "tests.fixtures.tiers",
]

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BRIDGE_SHARED_DIR", ROOT.parent / "shared"))

_port_open = port_open


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared directory (the corpus of real example events and the seed documents)."""
    if not (SHARED / "corpus").is_dir():
        pytest.fail(f"shared corpus not found at {SHARED}; set BRIDGE_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A reachable Redis: the machine's own, or a private redis-server started for the session."""
    url = os.environ.get("BRIDGE_TEST_REDIS_URL")
    if url:
        yield url
        return
    if _port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/15"
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("no Redis on 127.0.0.1:6379 and no redis-server binary to start one")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bridge-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _port_open("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("could not start redis-server")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
