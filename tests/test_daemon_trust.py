"""The daemon says once at start when no trust allow-list is configured, and stays quiet when one is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import bridge.daemon
from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.testing.memory import CapturingSink, InMemorySource
from testbed.logcapture import capture_module_logs
from testbed.waiting import wait_for


async def _start_and_stop(cfg_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    logs = capture_module_logs(monkeypatch, bridge.daemon)
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, **cfg_data})
    daemon = Daemon(cfg, sources=[InMemorySource(name="mem")], sink=CapturingSink())
    runner = asyncio.create_task(daemon.run())
    await wait_for(lambda: daemon.sink.ready, what="the sink started")
    daemon.request_stop()
    assert await asyncio.wait_for(runner, 30) == 0
    return [(e["log_level"], str(e["event"])) for e in logs.events]


async def test_start_warns_once_that_trust_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a trust section the start-up log has exactly one warning naming the missing allow-lists."""
    calls = await _start_and_stop({}, monkeypatch)
    warnings = [c for c in calls if c[1] == "daemon.trust_not_configured"]
    assert warnings == [("warning", warnings[0][1])]
    configured = await _start_and_stop({"trust": {"aws_accounts": ["123456789012"]}}, monkeypatch)
    assert not [c for c in configured if c[1] == "daemon.trust_not_configured"]
    assert any(c[1] == "daemon.running" for c in configured)
