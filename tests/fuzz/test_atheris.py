"""The coverage-guided fuzz target runs for a bounded time in the suite and finds nothing (``make fuzz`` runs it
longer by hand)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.seeds import seed_corpus, write_dictionary

pytestmark = pytest.mark.slow  # coverage-guided fuzzing for a bounded time

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("BRIDGE_FUZZ_SECONDS", "20"))


def test_atheris_target_finds_nothing_in_bounded_time(tmp_path: Path) -> None:
    """libFuzzer drives normalize/filters/encoding for ~20 s from the corpus seeds: it must end by its time limit
    (exit 0, no crash artifact) after many thousands of executions."""
    corpus = tmp_path / "corpus"
    assert seed_corpus(corpus) >= 60
    write_dictionary(tmp_path / "fuzz.dict")
    cmd = [sys.executable, "-m", "tests.fuzz.atheris_target", f"-max_total_time={SECONDS}", "-max_len=65536",
           "-timeout=20", "-rss_limit_mb=3000", f"-dict={tmp_path / 'fuzz.dict'}",
           f"-artifact_prefix={tmp_path}/", str(corpus)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120, check=False)
    log = proc.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    tail = "\n".join(line for line in log.splitlines() if not line.startswith("INFO: Instrumenting"))[-4000:]
    assert proc.returncode == 0 and not crashes, f"fuzz target failed (rc={proc.returncode}, {crashes}):\n{tail}"
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    assert done is not None, tail
    assert int(done.group(1)) >= 10_000, f"only {done.group(1)} executions: the target is not really running"
