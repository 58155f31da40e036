"""The README's "run it" command: the local stack starts real brokers, routes the corpus, and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker  # testbed.stack starts every broker

ROOT = Path(__file__).resolve().parent.parent


def test_local_stack_routes_every_unique_corpus_event_and_stops_cleanly(tmp_path: Path) -> None:
    """`python -m testbed.stack` (what `make stack` runs) exits 0 having routed every unique event, shows the
    current state of every subject with `bridge state` (the state topic the bridge created) and stopped the
    bridge with SIGTERM, without the test servers' debug lines in its output."""
    res = subprocess.run(
        [sys.executable, "-m", "testbed.stack", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert "== OK:" in out and "exit code 0" in out and "== brokers stopped" in out
    assert "Apache Kafka 4." in out, "the stack runs on Apache Kafka where a JDK is found (this machine has one)"
    assert "ml.jobs.failed" in out and "ml.events.deadletter" in out
    table = out.split("== bridge state --config", 1)[1]
    assert "SUBJECT" in table and "STATUS" in table and "training-job/kmeans-1" in table
    assert "experiments/" in table and " subjects on ml.state" in table
    shown = out + res.stderr
    assert "[debug" not in shown and "eventhubs_server.enqueued" not in shown
