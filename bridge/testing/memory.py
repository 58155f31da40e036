"""An in-memory source and a capturing sink, for tests of routes and of the pipeline itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Literal

from bridge import jsonutil
from bridge.aio import completed
from bridge.envelope import CloudEvent
from bridge.model import DeadLetter, OutRecord, Probe, RawMessage, Routed, SourceBatch
from bridge.sinks.encoding import DEADLETTER_ROUTE, BinaryEncoder, StructuredEncoder, decode_record, encoder_for


class InMemorySource:
    """Yields the given message bodies in batches and records which batches were acked (and how often)."""

    def __init__(
        self,
        bodies: Iterable[bytes | str | dict[str, object]] = (),
        batch_size: int = 100,
        name: str = "memory",
    ) -> None:
        self.name = name
        self.batch_size = batch_size
        self._queue: asyncio.Queue[RawMessage | None] = asyncio.Queue()
        self.acks: list[int] = []  # batch numbers, in ack order
        self.ack_counts: dict[int, int] = {}
        self.batches_yielded = 0
        self._n = 0
        self.ready = False
        for b in bodies:
            self.put(b)

    def put(self, body: bytes | str | dict[str, object], headers: dict[str, bytes] | None = None) -> None:
        if isinstance(body, dict):
            raw = jsonutil.dumps(body)
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = body
        self._n += 1
        self._queue.put_nowait(RawMessage(raw, headers or {}, self.name, f"{self.name}@{self._n}"))

    def close_input(self) -> None:
        """End the stream after what was put so far."""
        self._queue.put_nowait(None)

    def lag(self) -> dict[str, int]:
        """Messages put and not yet taken into a batch."""
        return {self.name: self._queue.qsize()}

    def probe(self) -> Probe | None:
        return None

    async def start(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    async def batches(self) -> AsyncIterator[SourceBatch]:
        done = False
        while not done:
            first = await self._queue.get()
            if first is None:
                return
            msgs = [first]
            while len(msgs) < self.batch_size and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    done = True
                    break
                msgs.append(nxt)
            number = self.batches_yielded
            self.batches_yielded += 1
            yield SourceBatch(msgs, self._acker(number), self.name)

    def _acker(self, number: int):  # type: ignore[no-untyped-def]
        async def ack() -> None:
            self.ack_counts[number] = self.ack_counts.get(number, 0) + 1
            self.acks.append(number)

        return ack

    @property
    def all_acked_once(self) -> bool:
        return len(self.ack_counts) == self.batches_yielded and all(c == 1 for c in self.ack_counts.values())


class CapturingSink:
    """Keeps every record it is given, and gives back what was published as ``Routed`` events and
    ``DeadLetter``s (decoded); can be told to fail the next N publish calls.

    Records are encoded like the Kafka sink does (CloudEvents binary mode by default, ``mode="structured"``),
    so what a test sees is what a consumer of the real topics would decode.
    """

    def __init__(self, mode: Literal["binary", "structured"] = "binary", max_record_bytes: int = 1024 * 1024) -> None:
        self.records: list[OutRecord] = []
        self.publish_calls = 0
        self.fail_next = 0
        self.fail_with: Callable[[], BaseException] = lambda: ConnectionError("injected publish failure")
        """What the next ``fail_next`` publish calls raise (a factory: a fresh exception per call)."""
        self.started = False
        self._encoder = encoder_for(mode, max_record_bytes)

    @property
    def encoder(self) -> BinaryEncoder | StructuredEncoder:
        return self._encoder

    @property
    def ready(self) -> bool:
        return self.started

    def probe(self) -> Probe | None:
        return None

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.publish_calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise self.fail_with()
        self.records.extend(records)

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        """Like ``publish`` (an injected failure raises here), then nothing left to confirm."""
        await self.publish(records)
        return completed()

    @property
    def routed(self) -> list[Routed]:
        """Published events, decoded, in publish order."""
        return [Routed(r.route, r.topic, CloudEvent.from_dict(decode_record(r.value, r.headers)))
                for r in self.records if r.route != DEADLETTER_ROUTE]

    @property
    def dead(self) -> list[DeadLetter]:
        """Published dead letters, decoded (``event`` from their ``ce_*`` headers when they stand for one)."""
        out: list[DeadLetter] = []
        for r in self.records:
            if r.route != DEADLETTER_ROUTE:
                continue
            h = dict(r.headers)
            event = None
            if "ce_id" in h:
                attrs = {k[3:]: v.decode() for k, v in r.headers if k.startswith("ce_")}
                attrs.setdefault("type", "")
                event = CloudEvent.from_dict(attrs)
            out.append(DeadLetter(r.topic, h["dlq_reason"].decode(), r.value, h.get("dlq_source", b"").decode(),
                                  h.get("dlq_position", b"").decode(), event))
        return out

    def topic(self, name: str) -> list[Routed]:
        return [d for d in self.routed if d.topic == name]
