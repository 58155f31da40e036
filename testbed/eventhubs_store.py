"""In-memory event store of the Event Hubs test server: partitions, positions, selector filters, batches.

Events are kept as encoded AMQP message sections, exactly as the producer sent them, with the Event Hubs
broker annotations (``x-opt-sequence-number``, ``x-opt-offset``, ``x-opt-enqueued-time``, and
``x-opt-partition-key`` when a key was given) merged into their message-annotations section at enqueue time.
Offsets are byte positions in the partition's log (as on the real service), so they differ from sequence
numbers. The store is thread safe: the AMQP thread appends, tests read snapshots.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proton import Data, Message, symbol, timestamp

SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
OFFSET = symbol("x-opt-offset")
ENQUEUED_TIME = symbol("x-opt-enqueued-time")
PARTITION_KEY = symbol("x-opt-partition-key")

_HEADER = 0x70
_DELIVERY_ANNOTATIONS = 0x71
_MESSAGE_ANNOTATIONS = 0x72
_DATA = 0x75
_BODY_SECTIONS = frozenset({0x75, 0x76, 0x77})
_ALL_SECTIONS = frozenset(range(0x70, 0x79))
_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>|=)\s*'([^']*)'\s*$"
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One enqueued event: its broker positions and its encoded AMQP sections (annotations included)."""

    partition: str
    sequence_number: int
    offset: int
    enqueued_time_ms: int
    partition_key: str | None
    encoded: bytes

    def message(self) -> Message:
        """Decode the stored event into a proton Message (for inspection in tests)."""
        msg = Message()
        msg.decode(self.encoded)
        return msg

    @property
    def body(self) -> bytes:
        """The event body as bytes (data sections joined; other bodies as their string form)."""
        msg = self.message()  # keep it alive: a binary body is a view into the message's buffer
        body = msg.body
        result = bytes(body) if isinstance(body, bytes | memoryview | bytearray) else str(body).encode()
        del msg
        return result


@dataclass(slots=True)
class Partition:
    """One partition's append-only log."""

    hub: str
    partition_id: str
    events: list[StoredEvent] = field(default_factory=list)
    next_offset: int = 0


def split_sections(raw: bytes) -> list[tuple[int, bytes]] | None:
    """Split an encoded AMQP message into ``(descriptor, section bytes)``; None if it is not one."""
    sections: list[tuple[int, bytes]] = []
    pos = 0
    data = Data()
    while pos < len(raw):
        data.clear()
        try:
            consumed = data.decode(raw[pos:])
        except Exception:
            return None
        if consumed <= 0:
            return None
        data.rewind()
        if not data.next() or data.type() != Data.DESCRIBED:
            return None
        data.enter()
        data.next()
        descriptor = data.get_object()
        if not isinstance(descriptor, int) or descriptor not in _ALL_SECTIONS:
            return None
        sections.append((int(descriptor), bytes(raw[pos : pos + consumed])))
        pos += consumed
    return sections


def _section_value(section: bytes) -> Any:
    data = Data()
    data.decode(section)
    data.rewind()
    data.next()
    data.enter()
    data.next()
    data.next()
    value = data.get_object()
    return bytes(value) if isinstance(value, memoryview) else value


def _encode_section(descriptor: int, value: Any) -> bytes:
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(descriptor)
    data.put_object(value)
    data.exit()
    return bytes(data.encode())


def unpack_batch(raw: bytes) -> list[bytes]:
    """Return the encoded events carried by one transfer: a batch message's data sections, or the message.

    The SDK sends batches with message format 0x80013700, which proton does not expose; a batch is recognised
    by its body being data sections that each hold a complete encoded AMQP message with a body section.
    """
    sections = split_sections(raw)
    if sections is None:
        raise ValueError("transfer is not an encoded AMQP message")
    data_sections = [s for d, s in sections if d == _DATA]
    if data_sections and all(d not in _BODY_SECTIONS or d == _DATA for d, _ in sections):
        inner = [_section_value(s) for s in data_sections]
        parsed = [split_sections(i) if isinstance(i, bytes) else None for i in inner]
        if all(p is not None and any(d in _BODY_SECTIONS for d, _ in p) for p in parsed):
            return [bytes(i) for i in inner]
    return [bytes(raw)]


def parse_selector(selector: str | None) -> tuple[str, str, str] | None:
    """Parse ``amqp.annotation.x-opt-<field> <op> '<value>'`` into ``(field, op, value)``."""
    if not selector:
        return None
    match = _SELECTOR.match(selector)
    if match is None:
        raise ValueError(f"unsupported selector filter: {selector!r}")
    field_name, op, value = match.groups()
    return field_name, op, value


def start_index(events: Sequence[StoredEvent], selector: str | None) -> int:
    """Index of the first event a receiver with this selector gets (``len(events)``: only new ones)."""
    parsed = parse_selector(selector)
    if parsed is None:
        return 0
    field_name, op, value = parsed
    if field_name == "x-opt-offset" and value == "@latest":
        return len(events)
    threshold = int(value)
    for index, event in enumerate(events):
        if field_name == "x-opt-offset":
            current = event.offset
        elif field_name == "x-opt-sequence-number":
            current = event.sequence_number
        else:
            current = event.enqueued_time_ms
        if (op == ">" and current > threshold) or (op in (">=", "=") and current >= threshold):
            return index
    return len(events)


class EventStore:
    """Partitions of every hub, addressed by ``(hub, partition_id)``; thread safe."""

    def __init__(self, hubs: Mapping[str, int]) -> None:
        self._lock = threading.Lock()
        self.created_at_ms = int(time.time() * 1000)
        self.partitions: dict[tuple[str, str], Partition] = {}
        self.hub_partitions: dict[str, list[str]] = {}
        self._round_robin: dict[str, int] = {}
        for hub, count in hubs.items():
            self.add_hub(hub, count)

    def add_hub(self, hub: str, partition_count: int) -> None:
        """Create a hub with partitions ``"0"`` .. ``str(partition_count - 1)``."""
        if partition_count < 1:
            raise ValueError("a hub needs at least one partition")
        with self._lock:
            if hub in self.hub_partitions:
                raise ValueError(f"hub {hub!r} exists")
            ids = [str(i) for i in range(partition_count)]
            for pid in ids:
                self.partitions[(hub, pid)] = Partition(hub, pid)
            self._round_robin[hub] = 0
            self.hub_partitions[hub] = ids

    def has_hub(self, hub: str) -> bool:
        """Whether the hub exists."""
        return hub in self.hub_partitions

    def choose_partition(self, hub: str, partition_key: str | None) -> str:
        """Partition for an event sent to the hub itself: hash of the key, else round robin."""
        ids = self.hub_partitions[hub]
        if partition_key is not None:
            return ids[zlib.crc32(partition_key.encode()) % len(ids)]
        with self._lock:
            index = self._round_robin[hub]
            self._round_robin[hub] = index + 1
        return ids[index % len(ids)]

    def append(
        self, hub: str, partition_id: str | None, encoded_events: Sequence[bytes]
    ) -> list[StoredEvent]:
        """Enqueue encoded events (one transfer's worth) and return them as stored."""
        out: list[StoredEvent] = []
        for raw in encoded_events:
            sections = split_sections(raw)
            if sections is None:
                raise ValueError("event is not an encoded AMQP message")
            annotations: dict[Any, Any] = {}
            for descriptor, section in sections:
                if descriptor == _MESSAGE_ANNOTATIONS:
                    annotations = dict(_section_value(section) or {})
            key = annotations.get(PARTITION_KEY)
            key_str = key.decode() if isinstance(key, bytes) else (str(key) if key is not None else None)
            pid = partition_id if partition_id is not None else self.choose_partition(hub, key_str)
            with self._lock:
                part = self.partitions[(hub, pid)]
                now_ms = max(int(time.time() * 1000), part.events[-1].enqueued_time_ms if part.events else 0)
                annotations[SEQUENCE_NUMBER] = len(part.events)
                annotations[OFFSET] = str(part.next_offset)
                annotations[ENQUEUED_TIME] = timestamp(now_ms)
                if key_str is not None:
                    annotations[PARTITION_KEY] = key_str
                rebuilt = bytearray()
                placed = False
                for descriptor, section in sections:
                    if descriptor == _MESSAGE_ANNOTATIONS:
                        continue
                    if not placed and descriptor > _MESSAGE_ANNOTATIONS:
                        rebuilt += _encode_section(_MESSAGE_ANNOTATIONS, annotations)
                        placed = True
                    rebuilt += section
                if not placed:
                    rebuilt += _encode_section(_MESSAGE_ANNOTATIONS, annotations)
                event = StoredEvent(pid, len(part.events), part.next_offset, now_ms, key_str, bytes(rebuilt))
                part.events.append(event)
                part.next_offset += len(raw)
            out.append(event)
        return out

    def snapshot(self, hub: str, partition_id: str) -> list[StoredEvent]:
        """A copy of the partition's events."""
        with self._lock:
            return list(self.partitions[(hub, partition_id)].events)

    def event_at(self, hub: str, partition_id: str, index: int) -> StoredEvent | None:
        """The event at ``index`` in the partition, or None past the end."""
        with self._lock:
            events = self.partitions[(hub, partition_id)].events
            return events[index] if index < len(events) else None

    def last_event(self, hub: str, partition_id: str) -> StoredEvent | None:
        """The partition's last enqueued event, or None while it is empty."""
        with self._lock:
            events = self.partitions[(hub, partition_id)].events
            return events[-1] if events else None

    def hub_info(self, hub: str) -> dict[str, Any]:
        """The ``com.microsoft:eventhub`` READ response body."""
        ids = self.hub_partitions[hub]
        return {
            "name": hub,
            "type": "com.microsoft:eventhub",
            "created_at": timestamp(self.created_at_ms),
            "partition_count": len(ids),
            "partition_ids": list(ids),
        }

    def partition_info(self, hub: str, partition_id: str) -> dict[str, Any]:
        """The ``com.microsoft:partition`` READ response body."""
        with self._lock:
            events = self.partitions[(hub, partition_id)].events
            last = events[-1] if events else None
        return {
            "name": hub,
            "type": "com.microsoft:partition",
            "partition": partition_id,
            "begin_sequence_number": 0,
            "last_enqueued_sequence_number": last.sequence_number if last else -1,
            "last_enqueued_offset": str(last.offset) if last else "-1",
            "last_enqueued_time_utc": timestamp(last.enqueued_time_ms if last else 0),
            "is_partition_empty": last is None,
        }


def with_runtime_metrics(event: StoredEvent, last: StoredEvent, retrieval_time_ms: int) -> bytes:
    """``event`` as sent to a receiver that tracks the last enqueued event: delivery annotations (after the
    header, as the AMQP section order requires) carry the partition's last sequence number, offset, time."""
    annotations: Any = {
        symbol("last_enqueued_sequence_number"): last.sequence_number,
        symbol("last_enqueued_offset"): str(last.offset),
        symbol("last_enqueued_time_utc"): timestamp(last.enqueued_time_ms),
        symbol("runtime_info_retrieval_time_utc"): timestamp(retrieval_time_ms),
    }
    section = _encode_section(_DELIVERY_ANNOTATIONS, annotations)
    raw = event.encoded
    sections = split_sections(raw)
    if sections and sections[0][0] == _HEADER:
        head = len(sections[0][1])
        return raw[:head] + section + raw[head:]
    return section + raw


def encode_event(
    body: bytes, properties: Mapping[str, Any] | None = None, partition_key: str | None = None
) -> bytes:
    """Encode an event the way the SDK producer does (data body, application properties, key annotation)."""
    msg = Message(body=body, inferred=True)
    if properties:
        application_properties: Any = dict(properties)
        msg.properties = application_properties
    if partition_key is not None:
        annotations: Any = {PARTITION_KEY: partition_key}
        msg.annotations = annotations
    return bytes(msg.encode())
