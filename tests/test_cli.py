"""The command line of docs/design.md ("Command line"), run as a real subprocess: output formats and exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


def bridge(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=120, check=False)


@pytest.fixture(scope="module")
def corpus_lines(shared_dir: Path) -> bytes:
    names = ["azureml_eventgrid.jsonl", "azureml_cloudevents.jsonl", "sagemaker.jsonl"]
    return b"".join((shared_dir / "corpus" / n).read_bytes() for n in names)


def _records(out: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(("config", "golden"), [
    ("config/replay.yaml", "replay_corpus_replay_yaml.jsonl"),
    ("NODEDUP", "replay_corpus_nodedup.jsonl"),
])
def test_replay_over_the_corpus_matches_the_reviewed_golden_output(
    corpus_lines: bytes, tmp_path: Path, config: str, golden: str
) -> None:
    """`bridge replay` over the whole corpus gives exactly the reviewed golden records."""
    if config == "NODEDUP":
        cfg = tmp_path / "nodedup.yaml"
        cfg.write_text("dedup: {enabled: false}\n")
        config = str(cfg)
    res = bridge("replay", "--config", config, "--input", "-", stdin=corpus_lines)
    assert res.returncode == 0, res.stderr.decode()
    got = sorted(res.stdout.splitlines())
    want = sorted((GOLDEN / golden).read_bytes().splitlines())
    assert [orjson.loads(x) for x in got] == [orjson.loads(x) for x in want]


def test_replay_output_line_format_and_deadletter_lines(tmp_path: Path) -> None:
    """Published records carry route/topic/key/event; bad input, an empty line included, gives a deadletter line
    with error and input."""
    good = b'{"version":"0","id":"e1","detail-type":"SageMaker Training Job State Change","source":"aws.sagemaker",' \
           b'"account":"1","time":"2024-01-01T00:00:00Z","region":"eu-west-1","resources":' \
           b'["arn:aws:sagemaker:eu-west-1:1:training-job/j"],"detail":{"TrainingJobStatus":"Failed"}}'
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(good + b"\n{broken\n\n[1,2]\n")
    out = tmp_path / "out.jsonl"
    res = bridge("replay", "--input", str(inp), "--output", str(out))
    assert res.returncode == 0, res.stderr.decode()
    recs = _records(out.read_bytes())
    routed = [r for r in recs if r["route"] != "deadletter"]
    dead = [r for r in recs if r["route"] == "deadletter"]
    assert routed == [{"route": "all", "topic": "ml.events", "key": "training-job/j", "event": routed[0]["event"]}]
    ev = routed[0]["event"]
    assert (ev["specversion"], ev["id"], ev["type"], ev["status"], ev["platform"], ev["partitionkey"]) == (
        "1.0", "e1", "ml.job.status_changed", "failed", "sagemaker", "training-job/j")
    assert sorted(d["input"] for d in dead) == ["", "[1,2]", "{broken"]  # an empty line is a message too
    assert [d["error"] for d in dead if d["input"] == ""] == ["malformed JSON: empty message body"]
    assert all(set(d) == {"route", "topic", "error", "input"} and d["topic"] == "ml.events.deadletter" for d in dead)
    assert any("malformed JSON" in d["error"] for d in dead)


def test_replay_restores_per_subject_order_and_drops_duplicates() -> None:
    """Replay emits each subject's events in sequence order whatever the input order, each id once."""
    def ev(i: int, second: int, status: str) -> bytes:
        return orjson.dumps({"version": "0", "id": f"id{i}", "detail-type": "SageMaker Training Job State Change",
                             "source": "aws.sagemaker", "account": "1", "time": f"2024-01-01T00:00:{second:02d}Z",
                             "region": "r", "resources": [f"arn:aws:sagemaker:r:1:training-job/j{i % 3}"],
                             "detail": {"TrainingJobStatus": status}})
    lines = [ev(i, 59 - i, "InProgress") for i in range(30)]
    lines += lines[:5]  # duplicates
    res = bridge("replay", "--input", "-", stdin=b"\n".join(lines) + b"\n")
    assert res.returncode == 0
    recs = _records(res.stdout)
    assert sorted(r["event"]["id"] for r in recs) == sorted(f"id{i}" for i in range(30))
    per_key: dict[str, list[str]] = defaultdict(list)
    for r in recs:
        per_key[r["key"]].append(r["event"]["sequence"])
    assert all(seqs == sorted(seqs) for seqs in per_key.values())


def test_replay_with_invalid_config_exits_1_and_explains(tmp_path: Path) -> None:
    """An invalid config makes replay exit non-zero with the error location on stderr."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("reorder: {late_policy: sometimes}\n")
    res = bridge("replay", "--config", str(cfg), "--input", "-", stdin=b"")
    assert res.returncode == 1
    assert b"reorder.late_policy" in res.stderr


def test_normalize_prints_one_canonical_event_per_input_event(corpus_lines: bytes) -> None:
    """`bridge normalize` turns every corpus line into a canonical CloudEvent, nothing dropped or deduplicated."""
    res = bridge("normalize", "-", stdin=corpus_lines)
    assert res.returncode == 0, res.stderr.decode()
    events = _records(res.stdout)
    assert len(events) == len([x for x in corpus_lines.splitlines() if x.strip()])
    assert {e["platform"] for e in events} == {"azureml", "sagemaker"}
    assert all(e["specversion"] == "1.0" and e["partitionkey"] == e["subject"] for e in events)


def test_normalize_reports_bad_lines_on_stderr_with_exit_1() -> None:
    """A line that does not normalize is reported with its line number and the exit code is 1."""
    res = bridge("normalize", stdin=b'{"id": 1}\n')
    assert res.returncode == 1 and b"line 1:" in res.stderr


def test_test_filter_prints_true_or_false_for_both_dialects(tmp_path: Path) -> None:
    """test-filter recognises the dialect from the shape and prints true/false with exit 0."""
    event = tmp_path / "event.json"
    event.write_text('{"source":"aws.sagemaker","detail-type":"SageMaker Training Job State Change",'
                     '"detail":{"TrainingJobStatus":"Failed","ResourceConfig":{"InstanceCount":3}}}')
    cases = [
        ('{"detail":{"TrainingJobStatus":["Failed"]}}', "true"),
        ('{"detail":{"ResourceConfig":{"InstanceCount":[{"numeric":[">",5]}]}}}', "false"),
        ('{"advancedFilters":[{"operatorType":"NumberGreaterThan","key":"detail.ResourceConfig.InstanceCount",'
         '"value":2}]}', "true"),
        ('{"subjectBeginsWith":"nothing"}', "false"),
    ]
    for i, (flt, want) in enumerate(cases):
        f = tmp_path / f"f{i}.json"
        f.write_text(flt)
        res = bridge("test-filter", "--filter", str(f), "--event", str(event))
        assert res.returncode == 0, res.stderr.decode()
        assert res.stdout.decode().strip() == want, flt


@pytest.mark.parametrize("rule", [
    '{"type":["ml.job.status_changed"],"status":["failed"]}',
    '{"cesql": "type = \'ml.job.status_changed\' AND status = \'failed\'"}',
])
def test_test_filter_canonical_mode_matches_the_normalized_event(tmp_path: Path, shared_dir: Path, rule: str) -> None:
    """With --canonical the filter (an EventBridge pattern or a CESQL filter) sees the canonical CloudEvent
    (type/status), not the raw shape."""
    line = (shared_dir / "corpus" / "sagemaker.jsonl").read_text().splitlines()[19]  # failed processing job
    event = tmp_path / "e.json"
    event.write_text(line)
    f = tmp_path / "f.json"
    f.write_text(rule)
    assert bridge("test-filter", "--filter", str(f), "--event", str(event)).stdout.strip() == b"false"
    assert bridge("test-filter", "--filter", str(f), "--event", str(event), "--canonical").stdout.strip() == b"true"


def test_test_filter_rejects_an_invalid_filter_with_its_path(tmp_path: Path) -> None:
    """An invalid pattern is reported with the path of the mistake and a non-zero exit."""
    f = tmp_path / "f.json"
    f.write_text('{"detail":{"status":[{"numeric":[">"]}]}}')
    e = tmp_path / "e.json"
    e.write_text("{}")
    res = bridge("test-filter", "--filter", str(f), "--event", str(e))
    assert res.returncode == 2 and b"detail.status" in res.stderr


CANONICAL_FAILED = {
    "specversion": "1.0", "id": "844e2571", "source": "aws.sagemaker/us-east-1/123456789012",
    "type": "ml.job.status_changed", "subject": "training-job/kmeans-1", "time": "2024-05-01T10:00:00Z",
    "datacontenttype": "application/json", "platform": "sagemaker", "origtype": "SageMaker Training Job State Change",
    "status": "failed", "sequence": "2024-05-01T10:00:00.000000Z", "partitionkey": "training-job/kmeans-1",
    "data": {"TrainingJobStatus": "Failed"},
}


def test_cesql_prints_one_json_object_with_result_and_error(tmp_path: Path) -> None:
    """`bridge cesql EXPRESSION --event FILE` prints exactly one JSON line {"result", "error"}: booleans, integers
    and strings as values, the error kind (or null), exit 0 also when the evaluation reported an error."""
    event = tmp_path / "event.json"
    event.write_bytes(orjson.dumps(CANONICAL_FAILED))
    cases = [
        ("type = 'ml.job.status_changed' AND status = 'failed' AND platform IN ('azureml', 'sagemaker')",
         {"result": True, "error": None}),
        ("subject LIKE 'training-job/%'", {"result": True, "error": None}),
        ("EXISTS late", {"result": False, "error": None}),
        ("LENGTH(subject) * 2", {"result": 42, "error": None}),
        ("UPPER(platform)", {"result": "SAGEMAKER", "error": None}),
        ("1 / 0", {"result": 0, "error": "math"}),
        ("INT(status)", {"result": 0, "error": "cast"}),
        ("NOPE(1)", {"result": False, "error": "missingFunction"}),
        ("LEFT(id, -1)", {"result": "844e2571", "error": "functionEvaluation"}),
        ("owner = 'ana'", {"result": False, "error": "missingAttribute"}),
        ("data = 'x'", {"result": False, "error": "missingAttribute"}),
    ]
    for expression, want in cases:
        res = bridge("cesql", expression, "--event", str(event))
        assert res.returncode == 0, (expression, res.stderr.decode())
        lines = res.stdout.splitlines()
        assert len(lines) == 1 and orjson.loads(lines[0]) == want, (expression, res.stdout)
        assert list(orjson.loads(lines[0])) == ["result", "error"]
        assert (res.stderr != b"") is (want["error"] is not None), res.stderr  # the reason, for people


def test_cesql_parse_error_prints_the_object_with_a_message_and_exits_2(tmp_path: Path) -> None:
    """A parse error prints {"result": null, "error": "parse", "message": ...} naming the position, exit 2."""
    event = tmp_path / "event.json"
    event.write_bytes(orjson.dumps(CANONICAL_FAILED))
    res = bridge("cesql", "status = 'failed' AND", "--event", str(event))
    assert res.returncode == 2
    [line] = res.stdout.splitlines()
    doc = orjson.loads(line)
    assert (doc["result"], doc["error"]) == (None, "parse") and list(doc) == ["result", "error", "message"]
    assert doc["message"].startswith("parse error at position 22: expected a value")


def test_cesql_reads_the_event_from_stdin_and_refuses_what_is_not_one_event(tmp_path: Path) -> None:
    """--event - reads the CloudEvent from stdin; a file that is not a JSON object is a usage error (exit 2, the
    reason on stderr); an event missing required attributes is evaluated as the spec says."""
    res = bridge("cesql", "status", "--event", "-", stdin=orjson.dumps(CANONICAL_FAILED))
    assert (res.returncode, orjson.loads(res.stdout)) == (0, {"result": "failed", "error": None})
    for body in (b"[1, 2]", b"{not json", b""):
        bad = tmp_path / "bad.json"
        bad.write_bytes(body)
        res = bridge("cesql", "TRUE", "--event", str(bad))
        assert res.returncode == 2 and res.stdout == b"" and b"error:" in res.stderr, body
    res = bridge("cesql", "TRUE", "--event", str(tmp_path / "absent.json"))
    assert res.returncode == 2 and b"cannot read" in res.stderr
    bare = tmp_path / "bare.json"
    bare.write_text('{"subject": "x"}')
    res = bridge("cesql", "EXISTS id AND id = 'x'", "--event", str(bare))
    assert orjson.loads(res.stdout) == {"result": False, "error": "missingAttribute"}


def test_test_filter_accepts_a_cesql_filter_file(tmp_path: Path, shared_dir: Path) -> None:
    """test-filter recognises {"cesql": "..."} in YAML too and matches the raw event's top-level keys; an invalid
    expression is reported with its position and exit 2."""
    event = tmp_path / "e.json"
    event.write_text((shared_dir / "corpus" / "sagemaker.jsonl").read_text().splitlines()[19])
    f = tmp_path / "f.json"
    raw = tmp_path / "raw.yaml"
    raw.write_text("cesql: \"source = 'aws.sagemaker' AND EXISTS region\"\n")
    assert bridge("test-filter", "--filter", str(raw), "--event", str(event)).stdout.strip() == b"true"
    f.write_text('{"cesql": "status = "}')
    res = bridge("test-filter", "--filter", str(f), "--event", str(event))
    assert res.returncode == 2 and b"cesql: parse error at position 10" in res.stderr


def test_check_config_lists_every_error_with_its_location(tmp_path: Path) -> None:
    """check-config reports all problems at once, each with its location, and exits 1."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "routes:\n"
        "  - name: x\n"
        "    topic: 'bad topic'\n"
        "    filters:\n"
        "      - pattern: {detail: {status: [{prefx: a}]}}\n"
        "      - cesql: \"status = 'failed' AND platform IN ('azureml',)\"\n"
        "dedup: {window_seconds: -1}\n"
        "sink: {type: kafka, sasl_password: '${BRIDGE_TEST_UNSET_VAR}'}\n"
        "sources:\n"
        "  - {type: sqs}\n"
    )
    res = bridge("check-config", str(cfg))
    err = res.stderr.decode()
    assert res.returncode == 1
    for loc in ("routes[0].topic", "routes[0].filters[0]", 'unknown operator "prefx"',
                "routes[0].filters[1]: cesql: parse error at position 46: expected a value", "dedup.window_seconds",
                "sink.sasl_password: environment variable BRIDGE_TEST_UNSET_VAR", "sources[0].queue_url"):
        assert loc in err, loc


def test_check_config_accepts_the_shipped_examples() -> None:
    """Every example config in config/ validates."""
    import os
    import re

    for path in sorted((ROOT / "config").glob("*.yaml")):
        names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()))
        env = {**os.environ, **{n: "placeholder" for n in names}}
        res = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", str(path)], capture_output=True,
                             cwd=ROOT, timeout=60, check=False, env=env)
        assert res.returncode == 0, (path, res.stderr.decode())


def test_check_config_reports_yaml_syntax_errors_with_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with its line and column."""
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("routes: [\n  {name: a\n")
    res = bridge("check-config", str(cfg))
    assert res.returncode == 1 and b"line " in res.stderr and b"YAML syntax error" in res.stderr


def test_replay_stdout_holds_only_json_lines_even_when_logging_warnings() -> None:
    """Dead-letter warnings are logged to stderr, so stdout stays pure JSON Lines."""
    res = bridge("replay", "--input", "-", stdin=b"{bad\n[]\n")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and all(orjson.loads(x)["route"] == "deadletter" for x in lines)
    assert b"pipeline.dead_lettered" in res.stderr
