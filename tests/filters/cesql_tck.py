"""Runner for CESQL test cases in the format of the CloudEvents CESQL TCK (cloudevents/spec, cesql/cesql_tck).

A file is ``{name, tests: [{name, expression, result?, error?, event?, eventOverrides?}]}``; ``error`` is one of
the TCK's kinds (``parse``, ``math``, ``cast``, ``missingAttribute``, ``missingFunction``,
``functionEvaluation``); without ``event`` the expression runs on a small valid CloudEvent with the overrides
applied. The repository's own cases (``tests/filters/cesql_cases/``) run through it in pytest; the official TCK
files, which are not copied into this repository, run by hand::

    python -m tests.filters.cesql_tck DIR [DIR ...]     # prints passed/total per file and every failure
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.filters.cesql import PARSE, CesqlParseError, compile_expression

DEFAULT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "tck-1",
    "source": "https://example.com/tck",
    "type": "com.example.tck",
    "subject": "tck-subject",
    "time": "2024-06-13T10:00:00Z",
    "datacontenttype": "application/json",
}


class _Loader(yaml.SafeLoader):
    """YAML without timestamp resolution: a ``time`` attribute stays the string a CloudEvent carries."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Outcome:
    file: str
    name: str
    passed: bool
    detail: str


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    return doc


def _text(expression: Any) -> str:
    """The expression as written: YAML reads a bare ``TRUE`` or ``-10`` as a boolean or an integer."""
    if isinstance(expression, bool):
        return "TRUE" if expression else "FALSE"
    return str(expression)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def run_case(case: dict[str, Any]) -> tuple[bool, str]:
    """Whether the implementation gives what ``case`` expects, and what it gave."""
    if "expression" not in case:
        return False, f"malformed case: no 'expression' key (keys: {sorted(case)})"
    expected_error = case.get("error")
    try:
        expression = compile_expression(_text(case["expression"]))
    except CesqlParseError as exc:
        return expected_error == PARSE, f"parse error: {exc}"
    if expected_error == PARSE:
        return False, "parsed, but a parse error is expected"
    event = dict(case["event"]) if "event" in case else dict(DEFAULT_EVENT)
    event.update(case.get("eventOverrides") or {})
    value, kind = expression.evaluate(event)
    got = f"result {value!r}, error {kind}"
    if kind != expected_error:
        return False, got
    if "result" in case and not _same(value, case["result"]):
        return False, got
    if "result" not in case and expected_error is None:
        return False, f"malformed case: neither result nor error ({got})"
    return True, got


def run_file(path: Path) -> list[Outcome]:
    return [Outcome(path.name, str(case.get("name")), *run_case(case)) for case in load(path)["tests"]]


def main(argv: list[str]) -> int:
    total = passed = 0
    for directory in argv or ["tests/filters/cesql_cases"]:
        for path in sorted(Path(directory).glob("*.yaml")):
            outcomes = run_file(path)
            ok = sum(o.passed for o in outcomes)
            total, passed = total + len(outcomes), passed + ok
            print(f"{ok:4}/{len(outcomes):<4} {path}")
            for o in outcomes:
                if not o.passed:
                    case = next(c for c in load(path)["tests"] if str(c.get("name")) == o.name)
                    print(f"      FAIL {o.name!r}: {case.get('expression', case.get('expresion'))!r} expected "
                          f"result {case.get('result')!r} error {case.get('error')}; got {o.detail}")
    print(f"{passed}/{total} passed")
    return 0 if passed == total else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
