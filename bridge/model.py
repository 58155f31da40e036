"""The narrow interfaces between stages: raw messages and batches from sources, deliveries to sinks.

Data walks one way: ``Source`` yields ``SourceBatch``es of ``RawMessage``s; the pipeline turns them into
``Delivery``s (a routed ``CloudEvent`` or a ``DeadLetter``) handed to a ``Sink``; once every event of a
batch has been published and confirmed by the sink, or deliberately dropped, the batch's ``ack`` is called,
exactly once, and the source releases its position (Kafka commit, Event Hubs checkpoint, SQS delete).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from bridge.envelope import CloudEvent

AckFn = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as it arrived from a broker: body bytes plus transport headers.

    ``headers`` carries transport metadata (Kafka record headers, e.g. CloudEvents binary mode ``ce_*``
    attributes, or Event Hubs application properties); ``position`` identifies where the message came from
    (``topic/partition@offset``, ``eventhub/partition@offset``, ``queue#message-id``) for dead-letter headers.
    """

    body: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)
    source: str = ""
    position: str = ""


@dataclass(slots=True)
class SourceBatch:
    """A batch of raw messages with its release callback (call ``ack`` once, after delivery)."""

    messages: Sequence[RawMessage]
    ack: AckFn | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Routed:
    """An event published on ``topic`` because route ``route`` matched it."""

    route: str
    topic: str
    event: CloudEvent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed, bound for the dead-letter topic with the reason."""

    topic: str
    reason: str
    raw: bytes
    source: str = ""
    position: str = ""
    event: CloudEvent | None = None


Delivery = Routed | DeadLetter


@runtime_checkable
class Sink(Protocol):
    """Publishes deliveries; ``publish`` returns only once every record is confirmed by the broker.

    It raises if any record could not be delivered (the caller then retries or fails the batch; no
    source position is released for undelivered records).
    """

    async def start(self) -> None: ...

    async def publish(self, deliveries: Sequence[Delivery]) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Source(Protocol):
    """Yields batches of raw messages; each batch's ``ack`` releases its position upstream.

    A source must tolerate acks arriving out of batch order and release positions only as a contiguous
    prefix (per partition) of acknowledged batches.
    """

    name: str

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[SourceBatch]: ...

    async def stop(self) -> None: ...
