"""The README's "Testing your own routes" example runs as a user would run it, so it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _example(section: str) -> str:
    text = README.read_text()
    body = text[text.index(f"## {section}"):]
    match = re.search(r"```python\n(.*?)```", body, re.S)
    assert match is not None, f"no python block under {section!r}"
    return match.group(1)


def test_the_testing_your_own_routes_example_runs_and_its_assertions_hold(tmp_path: Path) -> None:
    """The example, written to a file and run with this interpreter, routes the two failed events (one per cloud)
    to the route's topic and nothing else: it exits 0, and its own assertions are what it checks."""
    code = _example("Testing your own routes")
    assert code.count("assert ") >= 2
    script = tmp_path / "example.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    broken = tmp_path / "broken.py"  # the same example expecting another result must fail: the check can fail
    broken.write_text(code.replace('== ["az-1", "sm-1"]', '== ["sm-1"]'))
    assert subprocess.run([sys.executable, str(broken)], cwd=tmp_path, capture_output=True, timeout=120,
                          check=False).returncode != 0
