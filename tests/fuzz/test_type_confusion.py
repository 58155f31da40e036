"""Type-confused variants of every corpus event: normalize gives events or NormalizeErrors, encoding never fails,
filters never raise (the properties in tests/fuzz/harness.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import jsonutil
from tests.fuzz.harness import check_message
from tests.normalize.corpus_util import CORPUS_FILES, corpus_lines

CORPUS: Final = [(f"{name}[{i}]", jsonutil.loads(line)) for name in CORPUS_FILES
                 for i, line in enumerate(corpus_lines(name))]
DIGITS_10K: Final = "1" + "0" * 9999

# Raw JSON text put in place of a field: huge, negative, float, NaN-like, 10,000-digit, nested, array, null,
# unicode, and values of the wrong kind for time/id/type fields. Some are invalid JSON on purpose (NaN).
NASTY: Final[list[str]] = [
    "null", "true", "false", "0", "-1", "-0", "0.5", "-0.0", "1e308", "-1e308", "5e-324", "1.7976931348623157e308",
    "1e309", "NaN", "Infinity", "-Infinity", str(2**63), str(2**64), str(-(2**63) - 1), str(10**30), str(-(10**30)),
    "1" + "0" * 400, "1" + "0" * 4299, DIGITS_10K, "-" + DIGITS_10K, "1." + "0" * 10000, "1e" + "9" * 50,
    json.dumps(DIGITS_10K), json.dumps("-" + DIGITS_10K), json.dumps("1e400"), json.dumps("NaN"),
    json.dumps("Infinity"), json.dumps("-1"), json.dumps("99999999999999999999"), json.dumps(str(10**25)),
    json.dumps("9999-12-31T23:59:59.9999999Z"), json.dumps("0001-01-01T00:00:00Z"),
    json.dumps("2024-02-30T00:00:00Z"), json.dumps("2024-01-01T00:00:00+99:00"), json.dumps("2024-01-01T24:00:00"),
    json.dumps(""), json.dumps(" "), json.dumps("\u0000"), json.dumps("\ud83d\ude00 ünï \u202e\u2028"),
    '"\\ud800"', json.dumps("x" * 20_000), json.dumps("arn:"), json.dumps("arn:aws:sagemaker:::"),
    json.dumps("arn:a:b:c:d:" + "e" * 5000), "[]", "{}", "[null]", "[1, \"a\", {}]", '["arn:aws:sagemaker:r:a:x/y"]',
    '{"a": {"b": {"c": []}}}', "[" * 300 + "]" * 300, "[" * 1000 + "]" * 1000, "[" * 1025 + "]" * 1025,
    '{"x":' * 300 + "1" + "}" * 300, '{"sequencer": ' + str(10**30) + "}", '{"sequencer": -5}',
    '{"LastModifiedTime": 1e308}', '{"LastModifiedTime": ' + DIGITS_10K[:300] + "}",
    '{"LastModifiedTime": "' + DIGITS_10K + '"}', '{"runStatus": {"a": 1}}', '{"runStatus": [1]}',
]


# Inside data/detail the normalizer reads a few fields (status, sequencer, LastModifiedTime, names, ARNs): the
# type confusers are enough there (the random test below reaches deeper with every kind of value).
NESTED_NASTY: Final[list[str]] = [
    "null", "true", "[]", "{}", "-1", "1e308", "5e-324", str(2**64), "1" + "0" * 400, DIGITS_10K, "NaN",
    json.dumps("NaN"), json.dumps(DIGITS_10K), json.dumps(""), '"\\ud800"', json.dumps("\ud83d\ude00 \u202e"),
    "[" * 1000 + "]" * 1000, '{"x":' * 300 + "1" + "}" * 300, '["arn:aws:sagemaker:r:a:x/y"]',
]


def _paths(value: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    if depth > 6:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k), depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i), depth + 1)


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``tree`` with ``path`` replaced by ``value`` (``_DELETE`` removes a key)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        out = dict(tree)
        if value is _DELETE and not rest:
            out.pop(head, None)
        else:
            out[head] = _set(tree[head], rest, value)
        return out
    out_list = list(tree)
    out_list[head] = _set(tree[head], rest, None if value is _DELETE and not rest else value)
    return out_list


_DELETE: Final = object()


def _body(obj: Any, slots: dict[str, str]) -> bytes:
    """JSON text of ``obj`` where each slot marker string is replaced by its raw JSON text."""
    text = json.dumps(obj, ensure_ascii=False)
    for marker, raw in slots.items():
        quoted = json.dumps(marker, ensure_ascii=False)
        assert quoted in text, "the marker must be in the text, or the variant is not what it claims"
        text = text.replace(quoted, raw)
    return text.encode("utf-8", errors="surrogatepass")


def _variant(obj: dict[str, Any], edits: list[tuple[tuple[Any, ...], str | None]]) -> bytes:
    slots: dict[str, str] = {}
    for n, (path, raw) in enumerate(edits):
        if raw is None:
            obj = _set(obj, path, _DELETE)
        else:
            marker = f"\u2063fuzz-slot-{n}\u2063"
            slots[marker] = raw
            obj = _set(obj, path, marker)
    return _body(obj, slots)


TOP_FIELDS: Final = sorted({(name, k) for name, obj in CORPUS for k in obj})


@pytest.mark.parametrize(("name", "obj"), CORPUS, ids=[n for n, _ in CORPUS])
def test_every_field_with_every_nasty_value(name: str, obj: dict[str, Any]) -> None:
    """Each top-level field and each field of data/detail, replaced by each nasty value (or removed), keeps the
    properties; the event wrapped in an array, an SNS notification and Kafka binary mode too."""
    nested = [p for k in ("data", "detail") if isinstance(obj.get(k), dict) for p in ((k, f) for f in obj[k])]
    for path, values in [((k,), NASTY) for k in obj] + [(p, NESTED_NASTY) for p in nested]:
        check_message(_variant(obj, [(path, None)]))
        for raw in values:
            check_message(_variant(obj, [(path, raw)]))
    check_message(b"[" + _variant(obj, [((next(iter(obj)),), "[]")]) + b"," + json.dumps(obj).encode() + b"]")
    for raw in ("1e400", '"\\ud800"', json.dumps(DIGITS_10K)):
        time_field = "eventTime" if "eventTime" in obj else "time"
        inner = _variant(obj, [((time_field,), raw)]).decode("utf-8", errors="surrogatepass")
        check_message(json.dumps({"Type": "Notification", "Message": inner}).encode("utf-8", errors="surrogatepass"))


@pytest.mark.parametrize(("name", "obj"), [c for c in CORPUS if "specversion" in c[1]],
                         ids=[n for n, o in CORPUS if "specversion" in o])
def test_binary_mode_headers_with_nasty_values(name: str, obj: dict[str, Any]) -> None:
    """A CloudEvent in Kafka binary mode with each attribute header replaced by each nasty text (and invalid
    UTF-8) keeps the properties."""
    headers = {f"ce_{k}": str(v).encode() for k, v in obj.items() if k != "data"}
    body = json.dumps(obj.get("data")).encode()
    texts = [*NASTY, "\udcff"]
    for key in [*headers, "content-type", "ce_sequence"]:
        for raw in texts:
            value = raw.encode("utf-8", errors="surrogateescape") if raw != "\udcff" else b"\xff\xfe"
            check_message(body, {**headers, key: value})
        check_message(body, {k: v for k, v in headers.items() if k != key})
    for content_type in (b"text/plain", b"application/octet-stream", b"application/json; charset=utf-8"):
        check_message(base64.b64decode("/+7d"), {**headers, "content-type": content_type})
        check_message(body, {**headers, "content-type": content_type})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
raw_values = st.one_of(
    st.sampled_from(NASTY),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.integers(min_value=1, max_value=10_500).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=1_200).map(lambda n: "[" * n + "]" * n),
    st.floats().map(lambda f: json.dumps(f)),  # NaN / Infinity: invalid JSON on purpose
    st.text(max_size=30).map(lambda s: json.dumps(s, ensure_ascii=False)),
)


@st.composite
def variants(draw: st.DrawFn) -> bytes:
    _, obj = draw(st.sampled_from(CORPUS))
    paths = list(_paths(obj))
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True))
    edits: list[tuple[tuple[Any, ...], str | None]] = []
    for path in chosen:
        if any(other != path and path[: len(other)] == other for other in chosen):
            continue  # inside another chosen field, which is replaced whole
        edits.append((path, draw(st.none() | raw_values)))
    body = _variant(obj, edits)
    wrap = draw(st.sampled_from(["plain", "array", "sns"]))
    if wrap == "array":
        return b"[" + body + b"," + json.dumps(obj).encode() + b"]"
    if wrap == "sns":
        message = body.decode("utf-8", errors="surrogatepass")
        return json.dumps({"Type": "Notification", "Message": message}).encode("utf-8", errors="surrogatepass")
    return body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=variants())
def test_random_type_confused_variants(body: bytes) -> None:
    """Random nested fields of random corpus events replaced by random values keep the properties."""
    check_message(body)
