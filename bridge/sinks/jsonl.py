"""JSON Lines sink used by ``bridge replay``: one line per published record (DESIGN.md section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from bridge import jsonutil
from bridge.model import Delivery, Routed


def delivery_line(d: Delivery) -> bytes:
    if isinstance(d, Routed):
        ev = d.event
        return jsonutil.dumps({"route": d.route, "topic": d.topic, "key": ev.partitionkey, "event": ev.to_dict()})
    return jsonutil.dumps({
        "route": "deadletter",
        "topic": d.topic,
        "error": d.reason,
        "input": d.raw.decode("utf-8", errors="replace"),
    })


class JsonlSink:
    """Writes each delivery as one JSON line to a binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0

    async def start(self) -> None:
        return None

    async def publish(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        self.stream.write(b"\n".join(delivery_line(d) for d in deliveries) + b"\n")
        self.stream.flush()
        self.count += len(deliveries)

    async def stop(self) -> None:
        self.stream.flush()
