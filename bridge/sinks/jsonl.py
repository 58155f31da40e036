"""JSON Lines sink: one line per published record (docs/design.md, "Command line"); what ``bridge replay`` writes,
and a sink of ``bridge run`` (``sink: {type: jsonl, path: FILE}``) for trying routes without a broker.

Routed events: ``{"route": NAME, "topic": TOPIC, "key": KEY, "event": <canonical CloudEvent>}``; dead letters:
``{"route": "deadletter", "topic": TOPIC, "error": REASON, "input": <raw line>}``. Events are encoded once, at
admission, in CloudEvents structured mode; the line embeds those bytes unchanged (``orjson.Fragment``).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Sequence
from typing import IO, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bridge.aio import completed
from bridge.model import OutRecord, Probe
from bridge.sinks.encoding import DEADLETTER_ROUTE, StructuredEncoder
from bridge.sinks.registry import SinkConnector, register

UNLIMITED = 1 << 40


def record_line(rec: OutRecord) -> bytes:
    if rec.route == DEADLETTER_ROUTE:
        reason = dict(rec.headers).get("dlq_reason", b"").decode("utf-8", errors="replace")
        return orjson.dumps({
            "route": DEADLETTER_ROUTE,
            "topic": rec.topic,
            "error": reason,
            "input": rec.value.decode("utf-8", errors="replace"),
        })
    key = rec.key.decode("utf-8", errors="replace") if rec.key is not None else None
    return orjson.dumps({"route": rec.route, "topic": rec.topic, "key": key, "event": orjson.Fragment(rec.value)})


class JsonlSinkConfig(BaseModel):
    """Configuration of the JSON Lines sink."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["jsonl"] = Field(description="sink type")
    name: str = Field("jsonl", description="sink name (logs)")
    path: str = Field("-", description="file the lines are appended to; - is standard output")

    @property
    def max_inflight_groups(self) -> int:
        """Lines are written at once: one group at a time."""
        return 1


class JsonlSink:
    """Writes each record as one JSON line to a binary stream."""

    def __init__(self, stream: IO[bytes], owns_stream: bool = False) -> None:
        self.stream = stream
        self.count = 0
        self._owns = owns_stream
        self._encoder = StructuredEncoder(UNLIMITED)

    @classmethod
    def open(cls, config: JsonlSinkConfig) -> JsonlSink:
        """The sink of a ``sink: {type: jsonl}`` entry: standard output, or the file appended to."""
        if config.path == "-":
            return cls(sys.stdout.buffer)
        return cls(open(config.path, "ab"), owns_stream=True)

    @property
    def encoder(self) -> StructuredEncoder:
        return self._encoder

    @property
    def ready(self) -> bool:
        return not self.stream.closed

    def probe(self) -> Probe | None:
        return None

    async def start(self) -> None:
        return None

    async def publish(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        self.stream.write(b"\n".join(record_line(r) for r in records) + b"\n")
        self.stream.flush()
        self.count += len(records)

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        await self.publish(records)  # written at once: nothing left to confirm
        return completed()

    async def stop(self) -> None:
        if self.stream.closed:
            return
        self.stream.flush()
        if self._owns:
            self.stream.close()


CONNECTOR = register(SinkConnector(
    tag="jsonl",
    config=JsonlSinkConfig,
    build=JsonlSink.open,
    summary="JSON Lines: one line per published record (the format of `bridge replay`), to a file or standard "
    "output; no broker needed.",
))
