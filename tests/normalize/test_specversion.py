"""CloudEvents versions: 1.0 read as is, 0.3 converted to 1.0, anything else (or nothing) an error with a reason."""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import orjson
import pytest

from bridge.model import RawMessage
from bridge.normalize import NormalizeError, normalize, normalize_all
from tests.normalize.corpus_util import corpus_lines


def _ce(**changes: Any) -> dict[str, Any]:
    ev: dict[str, Any] = orjson.loads(corpus_lines("azureml_cloudevents")[2])
    ev.update(changes)
    return {k: v for k, v in ev.items() if v is not None}


def _one(obj: dict[str, Any]) -> Any:
    (ev,) = normalize(RawMessage(body=orjson.dumps(obj)))
    return ev


def test_v03_is_converted_to_v10() -> None:
    """A 0.3 event gives the same canonical event as its 1.0 twin, with schemaurl renamed dataschema."""
    v10 = _one(_ce(dataschema="https://example.com/s.json"))
    v03 = _one(_ce(specversion="0.3", schemaurl="https://example.com/s.json"))
    assert v03 == v10
    assert v03.extensions["dataschema"] == "https://example.com/s.json"
    assert "schemaurl" not in v03.extensions
    assert v03.to_dict()["specversion"] == "1.0"
    assert v03.original is not None and v03.original["specversion"] == "0.3"  # filters on the original see 0.3


def test_v03_base64_json_data_is_decoded() -> None:
    """0.3 ``datacontentencoding: base64`` with JSON content: data is the decoded JSON, the attribute is gone."""
    plain = _ce()
    encoded = base64.b64encode(orjson.dumps(plain["data"])).decode()
    ev = _one(_ce(specversion="0.3", datacontentencoding="base64", data=encoded))
    assert ev.data == plain["data"]
    assert ev.status == _one(plain).status
    assert "datacontentencoding" not in ev.to_dict()


def test_v03_base64_text_data_is_decoded_as_text() -> None:
    """0.3 base64 data with a text content type becomes the decoded text."""
    ev = _one(_ce(specversion="0.3", datacontentencoding="Base64", datacontenttype="text/plain",
                  data=base64.b64encode("héllo".encode()).decode()))
    assert ev.data == "héllo"
    assert ev.datacontenttype == "text/plain"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"specversion": "0.3", "datacontentencoding": "base64", "data": "%%%"}, "not valid base64"),
        ({"specversion": "0.3", "datacontentencoding": "base64", "data": {"a": 1}}, "not a string"),
        ({"specversion": "0.3", "datacontentencoding": "gzip", "data": "x"}, "datacontentencoding 'gzip'"),
        ({"specversion": "0.3", "datacontentencoding": "base64", "datacontenttype": "image/png",
          "data": base64.b64encode(b"\xff\xfe\x00").decode()}, "not UTF-8 text"),
    ],
)
def test_v03_bad_encoding_is_an_error(changes: dict[str, Any], reason: str) -> None:
    """0.3 data that cannot be decoded is an error naming the cause, never a silent pass-through."""
    with pytest.raises(NormalizeError, match=reason):
        _one(_ce(**changes))


@pytest.mark.parametrize(
    "version", ["0.2", "0.1", "2.0", "1", "", 1.0, 1, {"major": 1}, ["1.0"], True, "1.0 "]
)
def test_other_specversions_are_errors(version: Any) -> None:
    """Any specversion other than "1.0" and "0.3" (a number, an object, another string) is an error with a reason."""
    events, errors = normalize_all(RawMessage(body=orjson.dumps(_ce(specversion=version))))
    assert events == []
    assert len(errors) == 1
    assert "unsupported CloudEvents specversion" in errors[0].reason
    shown = {dict: "a JSON object", list: "a JSON array"}.get(type(version), repr(version))
    assert f"specversion {shown}:" in errors[0].reason


def test_null_specversion_is_missing() -> None:
    """``"specversion": null`` is reported as a missing specversion."""
    body = orjson.dumps({**_ce(), "specversion": None})
    with pytest.raises(NormalizeError, match=r"missing required field 'specversion'"):
        normalize(RawMessage(body=body))


def test_binary_mode_versions() -> None:
    """Kafka binary mode: ce_specversion 0.3 is converted (ce_schemaurl -> dataschema), 0.2 is an error."""
    headers = {"ce_specversion": b"0.3", "ce_id": b"i-1", "ce_source": b"/w", "ce_type": b"T",
               "ce_time": b"2024-01-02T03:04:05Z", "ce_schemaurl": b"s://x", "content-type": b"application/json"}
    (ev,) = normalize(RawMessage(body=b'{"a": 1}', headers=headers))
    assert ev.extensions.get("dataschema") == "s://x"
    assert ev.data == {"a": 1}
    with pytest.raises(NormalizeError, match=r"unsupported CloudEvents specversion '0\.2'"):
        normalize(RawMessage(body=b"{}", headers={**headers, "ce_specversion": b"0.2"}))


def test_replay_dead_letters_other_versions(tmp_path: Any) -> None:
    """Through ``bridge replay``, a 0.2 event is dead-lettered with the reason and a 0.3 one is published as 1.0."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(_ce(specversion="0.2")) + b"\n" + orjson.dumps(_ce(specversion="0.3")) + b"\n")
    out = tmp_path / "out.jsonl"
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "replay", "--input", str(src), "--output", str(out)],
                         capture_output=True, timeout=60, check=False)  # a subprocess: logging stays untouched here
    assert res.returncode == 0, res.stderr
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    dead = [x for x in lines if x["route"] == "deadletter"]
    published = [x for x in lines if x["route"] != "deadletter"]
    assert len(dead) == 1 and "unsupported CloudEvents specversion '0.2'" in dead[0]["error"]
    assert len(published) == 1 and published[0]["event"]["specversion"] == "1.0"
