"""JSON Lines sink used by ``bridge replay``: one line per published record (docs/design.md,
"Command line").

Routed events: ``{"route": NAME, "topic": TOPIC, "key": KEY, "event": <canonical CloudEvent>}``; dead letters:
``{"route": "deadletter", "topic": TOPIC, "error": REASON, "input": <raw line>}``. Events are encoded once, at
admission, in CloudEvents structured mode; the line embeds those bytes unchanged (``orjson.Fragment``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import IO

import orjson

from bridge.aio import completed
from bridge.model import OutRecord, Probe
from bridge.sinks.encoding import DEADLETTER_ROUTE, StructuredEncoder

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


class JsonlSink:
    """Writes each record as one JSON line to a binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0
        self._encoder = StructuredEncoder(UNLIMITED)

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
        self.stream.flush()
