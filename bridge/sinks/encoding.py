"""The CloudEvents Kafka protocol binding as an ``Encoder``: events become bytes once, at admission.

The pipeline calls ``encode(event)`` once per event and holds only the two byte strings it returns (``value``
and ``meta``) plus the event's id, source and sequence (``bridge.model.HeldEvent``); at publish time
``record(route, topic, held)`` rebuilds the Kafka record (key, value, headers) from them, once per route.
Holding bytes instead of parsed objects is what keeps the reorder buffer and the outbox small.

- binary (default): value = JSON of ``data``; a ``ce_<attribute>`` header per context attribute and extension,
  ``content-type`` = ``datacontenttype``; key = ``partitionkey`` (the subject). ``meta`` packs the header values
  other than id, source and sequence: a 2-byte layout number and the subject, time and extension values joined
  by NUL bytes. A layout (registered on first use, at most 4,096) holds the header names and the attributes that
  take few distinct values (type, platform, origtype, status), so each held event carries only what varies.
  A value containing a NUL byte (possible in JSON strings), or a full registry, switches that one event to a
  self-describing length-prefixed form (layout 0xFFFF).
- structured: value = the CloudEvents JSON format, ``content-type: application/cloudevents+json``; ``meta`` =
  the key. A late event gets ``"late":true`` spliced into the JSON object.
- dead letters: value = the raw input (or, for an event that could not be published, its structured JSON),
  no key, headers ``dlq_reason``, ``dlq_source``, ``dlq_position`` (plus the event's ``ce_*`` headers when it
  is an event). A dead letter always fits ``max_record_bytes``: a larger value is cut, and ``dlq_truncated``,
  ``dlq_size`` (original bytes) and ``dlq_sha256`` (of the original) say so.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from bridge import jsonutil
from bridge.envelope import CloudEvent
from bridge.model import DeadLetter, Encoder, Header, HeldEvent, OutRecord

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
CE_PREFIX: Final = "ce_"
DEADLETTER_ROUTE: Final = "deadletter"
Mode = Literal["binary", "structured"]

_SPEC: Final[Header] = ("ce_specversion", b"1.0")
_CT_JSON: Final[Header] = ("content-type", b"application/json")
_CT_STRUCTURED: Final[Header] = ("content-type", STRUCTURED_CONTENT_TYPE.encode())
_LATE: Final[Header] = ("ce_late", b"true")
_RESERVED: Final = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "platform", "origtype",
     "status", "sequence", "partitionkey", "late", "data"}
)
_SELF_DESCRIBING: Final = 0xFFFF
_MAX_LAYOUTS: Final = 4096
_REASON_MAX: Final = 4096  # bytes of a dead-letter reason kept in its header
_HEADER_SLACK: Final = 512  # record framing (lengths, offsets, timestamps) besides key, value and headers


def dumps(value: Any) -> bytes:
    """JSON bytes of a parsed value (``bridge.jsonutil``: exact integers beyond 64 bits), compact in memory.

    orjson returns a bytes object that keeps its whole write buffer (about 8 KiB for a 1 KiB document, measured
    with orjson 3.13: RSS per held result); the copy (0.3 us) is what lets a held record cost its length."""
    return memoryview(jsonutil.dumps(value)).tobytes()


def attr_bytes(value: Any) -> bytes:
    """A context attribute or extension value as a header value."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | float):
        return str(value).encode()
    return dumps(value)


def ce_headers(event: CloudEvent, *, content_type: bool = True) -> list[Header]:
    """Binary-mode headers of a whole event (``ce_<name>`` per attribute and extension, ``content-type``)."""
    headers: list[Header] = [
        _SPEC,
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
        ("ce_subject", event.subject.encode()),
        ("ce_time", event.time.encode()),
        ("ce_platform", event.platform.encode()),
        ("ce_origtype", event.origtype.encode()),
    ]
    if event.status is not None:
        headers.append(("ce_status", event.status.encode()))
    headers.append(("ce_sequence", event.sequence.encode()))
    headers.append(("ce_partitionkey", event.subject.encode()))
    if event.late:
        headers.append(_LATE)
    for key, value in event.extensions.items():
        if value is not None and key not in _RESERVED:
            headers.append((CE_PREFIX + key, attr_bytes(value)))
    if content_type:
        ct = event.datacontenttype
        headers.append(_CT_JSON if ct == "application/json" else ("content-type", ct.encode()))
    return headers


_LayoutKey = tuple[str, str, str, str | None, tuple[str, ...], bool]


class _Layout:
    """A registered binary-mode layout: the constant headers of its events (type, platform, origtype, status are
    few distinct values, so they live here, not in each held event) and the names of its variable tail."""

    __slots__ = ("consts", "own_ct", "tail", "type_pair")

    def __init__(self, key: _LayoutKey) -> None:
        etype, platform, origtype, status, ext, own_ct = key
        self.type_pair: Header = ("ce_type", etype.encode())
        consts: list[Header] = [("ce_platform", platform.encode()), ("ce_origtype", origtype.encode())]
        if status is not None:
            consts.append(("ce_status", status.encode()))
        self.consts = tuple(consts)
        self.tail = tuple(CE_PREFIX + k for k in ext) + (("content-type",) if own_ct else ())
        self.own_ct = own_ct


class _Layouts:
    """Registry of binary-mode layouts, numbered in order of first use (at most ``_MAX_LAYOUTS``)."""

    def __init__(self) -> None:
        self.by_key: dict[_LayoutKey, int] = {}
        self.items: list[_Layout] = []

    def number(self, key: _LayoutKey) -> int | None:
        found = self.by_key.get(key)
        if found is not None:
            return found
        if len(self.items) >= _MAX_LAYOUTS:
            return None  # adversarial variety of types or extension names: self-describing form, no growth
        self.items.append(_Layout(key))
        self.by_key[key] = len(self.items) - 1
        return len(self.items) - 1


_layouts = _Layouts()
_NUMBERS: Final = [n.to_bytes(2, "big") for n in range(_MAX_LAYOUTS)]


def _pack_long(names: Iterable[str], values: Iterable[bytes], split: int) -> bytes:
    """Self-describing meta: split point, then (name length, name, value length, value) per header."""
    out = bytearray(struct.pack(">HH", _SELF_DESCRIBING, split))
    for name, value in zip(names, values, strict=True):
        raw = name.encode()
        out += struct.pack(">I", len(raw)) + raw + struct.pack(">I", len(value)) + value
    return bytes(out)


def _unpack_long(meta: bytes) -> tuple[list[Header], list[Header]]:
    (split,) = struct.unpack_from(">H", meta, 2)
    pos, pairs = 4, []
    while pos < len(meta):
        (n,) = struct.unpack_from(">I", meta, pos)
        name = meta[pos + 4 : pos + 4 + n].decode()
        pos += 4 + n
        (m,) = struct.unpack_from(">I", meta, pos)
        pairs.append((name, meta[pos + 4 : pos + 4 + m]))
        pos += 4 + m
    return pairs[:split], pairs[split:]


class BinaryEncoder:
    """CloudEvents Kafka binary mode (see the module docstring)."""

    mode: Final = "binary"

    def __init__(self, max_record_bytes: int = 1024 * 1024) -> None:
        self.max_record_bytes = max_record_bytes

    def encode(self, event: CloudEvent) -> tuple[bytes, bytes]:
        data = event.data
        value = dumps(data) if data is not None else b""
        status = event.status
        ext: tuple[str, ...] = ()
        values = [event.subject.encode(), event.time.encode()]
        if event.extensions:
            ext = tuple(k for k, v in event.extensions.items() if v is not None and k not in _RESERVED)
            ext_values = event.extensions
            values.extend(attr_bytes(ext_values[k]) for k in ext)
        own_ct = event.datacontenttype != "application/json"
        if own_ct:
            values.append(event.datacontenttype.encode())
        number = _layouts.number((event.type, event.platform, event.origtype, status, ext, own_ct))
        packed = b"\x00".join(values)
        if number is None or packed.count(b"\x00") != len(values) - 1:  # a value holds a NUL byte
            head, tail = _layout_names(status is not None, ext, own_ct)
            head_values = [event.type.encode(), values[0], values[1], event.platform.encode(),
                           event.origtype.encode()]
            if status is not None:
                head_values.append(status.encode())
            return value, _pack_long(head + tail, head_values + values[2:], len(head))
        return value, _NUMBERS[number] + packed

    def headers(self, held: HeldEvent) -> tuple[bytes, list[Header]]:
        """(key, headers) of a held event."""
        meta = held.meta
        source, event_id = held.dkey
        headers: list[Header] = [_SPEC, ("ce_id", event_id.encode()), ("ce_source", source.encode())]
        number = (meta[0] << 8) | meta[1]
        if number == _SELF_DESCRIBING:
            head_pairs, tail_pairs = _unpack_long(meta)
            subject = head_pairs[1][1]
            headers += head_pairs
            headers.append(("ce_sequence", held.seq.encode()))
            headers.append(("ce_partitionkey", subject))
            if held.late:
                headers.append(_LATE)
            headers += tail_pairs
            if not tail_pairs or tail_pairs[-1][0] != "content-type":
                headers.append(_CT_JSON)
            return subject, headers
        layout = _layouts.items[number]
        values = meta[2:].split(b"\x00")
        subject = values[0]
        headers.append(layout.type_pair)
        headers.append(("ce_subject", subject))
        headers.append(("ce_time", values[1]))
        headers += layout.consts
        headers.append(("ce_sequence", held.seq.encode()))
        headers.append(("ce_partitionkey", subject))
        if held.late:
            headers.append(_LATE)
        if layout.tail:
            headers += zip(layout.tail, values[2:], strict=True)
        if not layout.own_ct:
            headers.append(_CT_JSON)
        return subject, headers

    def record(self, route: str, topic: str, held: HeldEvent) -> OutRecord:
        key, headers = self.headers(held)
        return OutRecord(route, topic, key, held.value, headers)

    def event_json(self, held: HeldEvent) -> bytes:
        attrs: dict[str, Any] = {}
        for name, value in self.headers(held)[1]:
            if name.startswith(CE_PREFIX):
                attrs[name[len(CE_PREFIX) :]] = value.decode(errors="replace")
            elif name == "content-type":
                attrs["datacontenttype"] = value.decode(errors="replace")
        if "late" in attrs:
            attrs["late"] = True
        head = orjson.dumps(attrs)
        if not held.value:
            return head
        return head[:-1] + b',"data":' + held.value + b"}"  # the data bytes as encoded, never re-parsed

    def dead_letter(self, dead: DeadLetter, held: HeldEvent | None = None) -> OutRecord:
        extra: list[Header] = []
        if held is not None:  # (an event that matched no route was never encoded: what identifies it)
            extra = [h for h in self.headers(held)[1] if h[0] != "content-type"] if held.meta else _identity(held)
        elif dead.event is not None:
            extra = ce_headers(dead.event, content_type=False)
        return bounded_dead_letter(dead, dead.raw, extra, self.max_record_bytes)


def _layout_names(has_status: bool, ext: tuple[str, ...], own_ct: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    head = ("ce_type", "ce_subject", "ce_time", "ce_platform", "ce_origtype") + (("ce_status",) if has_status else ())
    tail = tuple(CE_PREFIX + k for k in ext) + (("content-type",) if own_ct else ())
    return head, tail


class StructuredEncoder:
    """CloudEvents Kafka structured mode (see the module docstring)."""

    mode: Final = "structured"

    def __init__(self, max_record_bytes: int = 1024 * 1024) -> None:
        self.max_record_bytes = max_record_bytes

    def encode(self, event: CloudEvent) -> tuple[bytes, bytes]:
        return dumps(event.to_dict()), event.subject.encode()

    @staticmethod
    def value(held: HeldEvent) -> bytes:
        """The structured JSON of a held event (``late`` spliced in when set)."""
        value = held.value
        if held.late and value[:1] == b"{":
            return b'{"late":true,' + value[1:]
        return value

    def record(self, route: str, topic: str, held: HeldEvent) -> OutRecord:
        return OutRecord(route, topic, held.meta, self.value(held), [_CT_STRUCTURED])

    def event_json(self, held: HeldEvent) -> bytes:
        return self.value(held)

    def dead_letter(self, dead: DeadLetter, held: HeldEvent | None = None) -> OutRecord:
        extra: list[Header] = []
        if held is not None:
            extra = _identity(held)
            if held.meta:
                extra.insert(2, ("ce_subject", held.meta))
        elif dead.event is not None:
            extra = ce_headers(dead.event, content_type=False)
        return bounded_dead_letter(dead, dead.raw, extra, self.max_record_bytes)


def _identity(held: HeldEvent) -> list[Header]:
    out: list[Header] = [_SPEC, ("ce_id", held.dkey[1].encode()), ("ce_source", held.dkey[0].encode()),
                         ("ce_sequence", held.seq.encode())]
    if held.late:
        out.append(_LATE)
    return out


def encoder_for(mode: Mode, max_record_bytes: int = 1024 * 1024) -> BinaryEncoder | StructuredEncoder:
    return BinaryEncoder(max_record_bytes) if mode == "binary" else StructuredEncoder(max_record_bytes)


@dataclass(slots=True)
class Held:
    """A ``HeldEvent`` outside the pipeline (for tools and tests that publish events themselves)."""

    value: bytes
    meta: bytes
    seq: str
    dkey: tuple[str, str]
    late: bool = False


def encode_routed(encoder: Encoder, route: str, topic: str, event: CloudEvent) -> OutRecord:
    """The record of one event on one route, as the pipeline would publish it."""
    value, meta = encoder.encode(event)
    return encoder.record(route, topic, Held(value, meta, event.sequence, (event.source, event.id), event.late))


def _cut(data: bytes, limit: int) -> bytes:
    return data if len(data) <= limit else data[: max(0, limit)]


def bounded_dead_letter(dead: DeadLetter, value: bytes, extra: list[Header], limit: int) -> OutRecord:
    """A dead-letter record that fits ``limit`` bytes (value, headers and framing): the reason is kept up to 4 KiB
    (a quarter of the room on small limits), event headers are reduced to what identifies the event if they would
    take more than half the room, and the value is cut to what is left."""
    budget = max(0, limit - _HEADER_SLACK - 512)  # framing, and room for dlq_size/dlq_sha256/dlq_truncated
    small = max(16, budget // 16)
    headers: list[Header] = [
        ("dlq_reason", _cut(dead.reason.encode(), min(_REASON_MAX, budget // 4))),
        ("dlq_source", _cut(dead.source.encode(), min(1024, small))),
        ("dlq_position", _cut(dead.position.encode(), min(1024, small))),
    ]
    used = sum(len(k) + len(v) for k, v in headers)
    extra_size = sum(len(k) + len(v) for k, v in extra)
    if used + extra_size <= budget // 2:
        headers += extra
        used += extra_size
    else:  # oversized attributes (a huge subject, say): keep what identifies the event
        keep = [(k, _cut(v, min(512, small))) for k, v in extra if k in ("ce_id", "ce_source", "ce_type",
                                                                         "ce_subject")]
        headers += keep
        used += sum(len(k) + len(v) for k, v in keep)
    room = max(0, budget - used)
    if len(value) > room:
        headers += [
            ("dlq_truncated", b"true"),
            ("dlq_size", str(len(value)).encode()),
            ("dlq_sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:room]
    return OutRecord(DEADLETTER_ROUTE, dead.topic, None, value, headers)


def decode_record(
    value: bytes | None, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]]
) -> dict[str, Any]:
    """Turn a Kafka record written in binary or structured mode back into a CloudEvents JSON dict."""
    hdrs = dict(headers.items() if isinstance(headers, Mapping) else headers)
    content_type = (hdrs.get("content-type") or b"").decode()
    if content_type.startswith("application/cloudevents"):
        decoded = jsonutil.loads(value or b"null")
        if not isinstance(decoded, dict):
            raise ValueError("structured record value is not a JSON object")
        return decoded
    if CE_PREFIX + "specversion" not in hdrs:
        raise ValueError("record is neither structured nor binary CloudEvents (no ce_specversion header)")
    event: dict[str, Any] = {}
    for key, raw in hdrs.items():
        if key.startswith(CE_PREFIX):
            event[key[len(CE_PREFIX) :]] = (raw or b"").decode()
    if "late" in event:
        event["late"] = event["late"] == "true"
    if content_type:
        event["datacontenttype"] = content_type
    if value:
        event["data"] = jsonutil.loads(value) if "json" in content_type or not content_type else value.decode()
    return event
