"""The sink encoders: an event encoded once into compact bytes (value, meta) comes back as exactly the CloudEvents
Kafka record it stands for, whatever its attributes; dead letters always fit the record limit."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.envelope import CloudEvent
from bridge.model import DeadLetter
from bridge.sinks import encoding
from bridge.sinks.encoding import BinaryEncoder, Held, StructuredEncoder, ce_headers, decode_record, encode_routed
from bridge.testing.events import make_event


def held(enc: BinaryEncoder | StructuredEncoder, ev: CloudEvent) -> Held:
    value, meta = enc.encode(ev)
    return Held(value, meta, ev.sequence, (ev.source, ev.id), ev.late)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
attr_values = st.one_of(text, st.integers(-(2**70), 2**70), st.booleans(), st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(subject=text.filter(bool), status=st.sampled_from([None, "running", "failed"]), late=st.booleans(),
       origtype=text.filter(bool), ext=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), attr_values,
                                                       max_size=3),
       ctype=st.sampled_from(["application/json", "application/vnd.example+json"]))
def test_binary_record_equals_the_whole_event_encoding(subject: str, status: str | None, late: bool, origtype: str,
                                                       ext: dict[str, Any], ctype: str) -> None:
    """Whatever the attributes (NUL bytes, unicode, extensions, no status, own content type), the record rebuilt
    from the held bytes has the headers ce_headers gives for the whole event, the subject as key, data as value."""
    ev = make_event("i-1", subject, "t:2026-01-01T00:00:00.000000Z:2", status=status, data={"x": [1, 2**65]})
    ev = ev.evolve(origtype=origtype, extensions=ext, datacontenttype=ctype, late=late)
    enc = BinaryEncoder()
    rec = enc.record("r", "t", held(enc, ev))
    assert rec.key == subject.encode()
    assert sorted(rec.headers) == sorted(ce_headers(ev))
    assert decode_record(rec.value, rec.headers)["data"] == {"x": [1, 2**65]}


def test_values_with_nul_bytes_and_a_full_layout_registry_use_the_self_describing_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NUL byte in an attribute, or more distinct layouts than the registry holds, still round-trips exactly."""
    enc = BinaryEncoder()
    ev = make_event("n-1", "a\x00b").evolve(origtype="x\x00y")
    h = held(enc, ev)
    assert h.meta[:2] == b"\xff\xff"
    assert sorted(enc.record("r", "t", h).headers) == sorted(ce_headers(ev))
    monkeypatch.setattr(encoding, "_layouts", encoding._Layouts())
    monkeypatch.setattr(encoding, "_MAX_LAYOUTS", 3)
    for i in range(5):
        ev = make_event(f"l-{i}").evolve(origtype=f"Type {i}")
        h = held(enc, ev)
        assert (h.meta[:2] == b"\xff\xff") == (i >= 3)
        assert sorted(enc.record("r", "t", h).headers) == sorted(ce_headers(ev))


def test_held_bytes_stay_small() -> None:
    """The held meta of a typical event carries only its subject and time beside a 2-byte layout number."""
    ev = make_event("s-1", "training-job/kmeans-1")
    _, meta = BinaryEncoder().encode(ev)
    assert len(meta) == 2 + len(ev.subject) + 1 + len(ev.time)


def test_structured_record_and_late_splice() -> None:
    """Structured mode holds the CloudEvents JSON; a late event gets late=true spliced into it."""
    enc = StructuredEncoder()
    ev = make_event("s-2", "models/m:1")
    h = held(enc, ev)
    h.late = True
    rec = enc.record("r", "t", h)
    assert rec.key == b"models/m:1" and rec.headers == [("content-type", b"application/cloudevents+json")]
    assert decode_record(rec.value, rec.headers) == {**ev.to_dict(), "late": True}
    assert decode_record(*_vh(encode_routed(enc, "r", "t", ev))) == ev.to_dict()


def _vh(rec: Any) -> tuple[bytes, list[tuple[str, bytes]]]:
    return rec.value, rec.headers


def test_event_json_of_a_held_binary_event_is_its_cloudevent() -> None:
    """The structured JSON rebuilt from a binary held event (for dead letters) is the event's own JSON."""
    ev = make_event("j-1", data={"big": 2**70})
    enc = BinaryEncoder()
    assert decode_record(enc.event_json(held(enc, ev)), [("content-type", b"application/cloudevents+json")]) \
        == {**ev.to_dict(), "data": {"big": 2**70}}


@pytest.mark.parametrize("limit", [4096, 64 * 1024])
def test_dead_letters_always_fit_and_say_what_was_cut(limit: int) -> None:
    """A dead letter larger than the record limit is cut to fit; its headers keep the reason (cut to 4 KiB), the
    original size, its SHA-256 and the position; attributes too large to carry are reduced to what identifies
    the event."""
    enc = BinaryEncoder(limit)
    raw = b"r" * (limit * 3)
    dl = DeadLetter("dlq", "why " * 5000, raw, "src", "raw/0@7")
    big = make_event("d-1", "s" * (limit * 2))
    for rec in (enc.dead_letter(dl), enc.dead_letter(dl, held(enc, big)), StructuredEncoder(limit).dead_letter(dl)):
        size = len(rec.value) + sum(len(k) + len(v) for k, v in rec.headers)
        h = dict(rec.headers)
        assert size <= limit and rec.key is None
        assert h["dlq_truncated"] == b"true" and int(h["dlq_size"]) == len(raw)
        assert h["dlq_sha256"] == hashlib.sha256(raw).hexdigest().encode() and h["dlq_position"] == b"raw/0@7"
        assert raw.startswith(rec.value) and len(h["dlq_reason"]) <= 4096
    small = enc.dead_letter(DeadLetter("dlq", "bad", b"{x", "src", "p"))
    assert small.value == b"{x" and "dlq_truncated" not in dict(small.headers)
