"""bridge.jsonutil: exact integers of any size in and out, the same acceptance rules as orjson, deep nesting written."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
import pytest

from bridge import jsonutil
from bridge.model import RawMessage
from bridge.normalize import normalize
from bridge.sinks.encoding import BinaryEncoder, StructuredEncoder, decode_record, encode_routed

BIG = [2**64, 2**64 - 1, -(2**63) - 1, 10**30 + 7, -(10**40) - 3, 12345678901234567890123, 10**400 + 1]


@pytest.mark.parametrize("n", BIG)
def test_big_integers_round_trip_exactly(n: int) -> None:
    """An integer beyond 64 bits (or beyond a double's range) is read as that exact int and written back as is."""
    text = f'{{"a": [{n}, 1.5, "x"], "b": {n}}}'.encode()
    value = jsonutil.loads(text)
    assert value == {"a": [n, 1.5, "x"], "b": n}
    assert type(value["b"]) is int
    assert jsonutil.dumps(value) == f'{{"a":[{n},1.5,"x"],"b":{n}}}'.encode()


def test_fast_path_output_matches_orjson() -> None:
    """Without long digit runs, loads and dumps are orjson's own results (byte for byte)."""
    doc = {"x": [1, -2, 3.25, None, True, "é\u2028", {"k": 2**63 - 1}], "t": "2024-01-02T03:04:05Z"}
    raw = orjson.dumps(doc)
    assert jsonutil.loads(raw) == orjson.loads(raw)
    assert jsonutil.dumps(doc) == raw


@pytest.mark.parametrize(
    "text",
    [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1}x', b'{"a": "\\ud800"}', b'\xff{"a":1}',
     b'{"a": 1234567890123456789012, "b": NaN}', b'{"n": 12345678901234567890123, "s": "\\ud800"}',
     b"[" * 1025 + b"]" * 1025, b'{"n": 1234567890123456789012,}', b'{"a": 1e309, "b": 18446744073709551616}',
     b'{"n": 1' + b"0" * 400 + b', "s": "\\ud800"}', b'{"n": 1' + b"0" * 400 + b', "s": "\xff"}',
     b'{"n": 1' + b"0" * 400 + b', "d": ' + b"[" * 1024 + b"]" * 1024 + b"}"],
)
def test_invalid_json_is_rejected_on_both_paths(text: bytes) -> None:
    """What orjson rejects (NaN, lone surrogates, bad UTF-8, nesting past 1024, trailing data) loads rejects
    too, with or without long integers, as a JSONDecodeError."""
    with pytest.raises(jsonutil.JSONDecodeError):
        jsonutil.loads(text)


def test_integer_literal_longer_than_the_limit_is_a_decode_error() -> None:
    """A 10,000-digit integer cannot be held as text by Python: a JSONDecodeError naming the digit count."""
    with pytest.raises(jsonutil.JSONDecodeError, match="10000 digits"):
        jsonutil.loads(b'{"n": 1' + b"0" * 9999 + b"}")
    assert jsonutil.loads(b'{"n": 1' + b"0" * 4299 + b"}")["n"] == 10**4299


def test_deep_nesting_is_written() -> None:
    """Data nested 1000 levels deep (orjson reads it but refuses to write past 255) is written exactly."""
    text = b"[" * 1000 + b"1" + b"]" * 1000
    value = jsonutil.loads(text)
    assert jsonutil.dumps(value) == text


def test_other_encode_errors_still_raise() -> None:
    """Values JSON cannot hold (a set, a non-string key) still raise TypeError, as with orjson."""
    with pytest.raises(TypeError):
        jsonutil.dumps({"a": {1, 2}})
    with pytest.raises(TypeError):
        jsonutil.dumps({1: 2})


def _sagemaker(detail_extra: dict[str, Any]) -> bytes:
    ev = {
        "version": "0", "id": "big-1", "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker", "account": "123456789012", "time": "2024-01-02T03:04:05Z",
        "region": "eu-west-1", "resources": ["arn:aws:sagemaker:eu-west-1:123456789012:training-job/tj"],
        "detail": {"TrainingJobName": "tj", "TrainingJobStatus": "InProgress", **detail_extra},
    }
    return json.dumps(ev).encode()


def test_normalized_data_and_encodings_keep_big_integers() -> None:
    """A payload integer beyond 64 bits stays exact in the canonical event, in binary and structured Kafka
    records and in the CloudEvents JSON."""
    n = 2**70 + 3
    (ev,) = normalize(RawMessage(_sagemaker({"Huge": n, "Neg": -n})))
    assert ev.data["Huge"] == n and ev.data["Neg"] == -n
    rec = encode_routed(BinaryEncoder(), "all", "t", ev)
    assert decode_record(rec.value, rec.headers)["data"]["Huge"] == n
    rec = encode_routed(StructuredEncoder(), "all", "t", ev)
    assert decode_record(rec.value, rec.headers)["data"]["Neg"] == -n
    assert json.loads(ev.to_json())["data"]["Huge"] == n


def bridge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (in-process runs would leave logging bound to pytest's streams)."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_replay_keeps_big_integers_exact(tmp_path: Any) -> None:
    """``bridge replay`` writes a payload integer beyond 64 bits exactly as it came in (not as a float)."""
    n = 123456789012345678901234567890
    src = tmp_path / "in.jsonl"
    src.write_bytes(_sagemaker({"Huge": n}) + b"\n")
    out = tmp_path / "out.jsonl"
    assert bridge_cli("replay", "--input", str(src), "--output", str(out)).returncode == 0
    (line,) = out.read_bytes().splitlines()
    assert f'"Huge":{n}'.encode() in line
    assert json.loads(line)["event"]["data"]["Huge"] == n


def test_untrusted_event_with_a_big_integer_beside_a_trusted_one(tmp_path: Any) -> None:
    """An untrusted event holding an integer beyond 64 bits, in an array with a trusted one, is dead-lettered
    alone as untrusted (its JSON written exactly); the trusted one is published (it was dead-lettered with the
    whole message as ``normalize failed: TypeError: Integer exceeds 64-bit range``)."""
    n = 2**70
    untrusted = json.loads(_sagemaker({"Huge": n}).decode().replace("123456789012", "222222222222"))
    trusted = {**json.loads(_sagemaker({})), "id": "trusted-1"}
    (tmp_path / "trust.yaml").write_text('trust:\n  aws_accounts: ["123456789012"]\n')
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps([untrusted, trusted]) + "\n")
    out = tmp_path / "out.jsonl"
    assert bridge_cli("replay", "--config", str(tmp_path / "trust.yaml"), "--input", str(src),
                      "--output", str(out)).returncode == 0
    lines = [json.loads(x) for x in out.read_bytes().splitlines()]
    assert [x["event"]["id"] for x in lines if x["route"] != "deadletter"] == ["trusted-1"]
    (dead,) = [x for x in lines if x["route"] == "deadletter"]
    assert dead["error"].startswith("untrusted"), dead["error"]
    assert json.loads(dead["input"])["detail"]["Huge"] == n


def test_test_filter_compares_big_integers_exactly(tmp_path: Any) -> None:
    """``bridge test-filter`` reads the event with exact integers: 2**64+1 is not equal to 2**64 (as floats they
    were the same number)."""
    (tmp_path / "f.json").write_text(json.dumps({"detail": {"Huge": [2**64]}}))
    (tmp_path / "e.json").write_text(_sagemaker({"Huge": 2**64 + 1}).decode())
    res = bridge_cli("test-filter", "--filter", str(tmp_path / "f.json"), "--event", str(tmp_path / "e.json"))
    assert res.returncode == 0 and res.stdout.strip() == "false", res
