"""The repository's CESQL cases (tests/filters/cesql_cases/*.yaml, in the CESQL TCK format), one test each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.filters.cesql_tck import load, run_case

CASES_DIR = Path(__file__).parent / "cesql_cases"
CASES = [(path.stem, case) for path in sorted(CASES_DIR.glob("*.yaml")) for case in load(path)["tests"]]


@pytest.mark.parametrize(("file", "case"), CASES, ids=[f"{f}: {c['name']}" for f, c in CASES])
def test_case(file: str, case: dict[str, Any]) -> None:
    """The expression gives the case's result and error kind (or the parse error it expects)."""
    passed, got = run_case(case)
    assert passed, f"{case['expression']!r}: expected result {case.get('result')!r} error {case.get('error')}; {got}"


def test_the_case_files_cover_every_area() -> None:
    """Every area of the language has its file of cases, and there are enough of them to mean something."""
    assert {f for f, _ in CASES} == {"errors", "functions", "like_in_exists", "literals_and_names", "ml_events",
                                      "operators", "parse_errors"}
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", [
    {"name": "wrong result", "expression": "1 + 1", "result": 3},
    {"name": "wrong type", "expression": "1 = 1", "result": 1},
    {"name": "missing error", "expression": "1 / 0", "result": 0},
    {"name": "unexpected parse error", "expression": "1 +", "result": 1},
    {"name": "parse error expected", "expression": "1", "error": "parse"},
    {"name": "other error kind", "expression": "missing", "result": False, "error": "cast"},
    {"name": "misspelled key", "expresion": "TRUE", "result": True},
    {"name": "no expectation", "expression": "TRUE"},
])
def test_the_runner_fails_cases_that_do_not_hold(case: dict[str, Any]) -> None:
    """The runner reports a case as failed when the result, its type or the error kind differ, or the case is
    malformed (so a passing case means something)."""
    assert run_case(case)[0] is False
