"""The narrow interfaces between stages: raw messages and batches from sources, records to sinks.

Data walks one way: ``Source`` yields ``SourceBatch``es of ``RawMessage``s; the pipeline turns each event into
bytes once, at admission, with the sink's ``Encoder``, and hands ``OutRecord``s (topic, key, value, headers) to
the ``Sink``; once every event of a batch has been published and confirmed by the sink, or deliberately dropped,
the batch is released, exactly once, and the source releases its position (Kafka commit, Event Hubs
checkpoint, SQS delete): in the two steps of its ``Release`` (mark, then the source's ``PositionWriter``
writes) where the source splits them, else through its ``ack``. ``Routed`` and ``DeadLetter`` are the decoded,
human-facing forms of what was published (``bridge.testing.CapturingSink`` gives them back to tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable

from bridge.envelope import CloudEvent

AckFn = Callable[[], Awaitable[None]]
Probe = Callable[[], Awaitable[object]]
"""A broker check for readiness: awaiting it asks the broker for metadata, and it raises when there is no answer."""


_NO_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class RawMessage(NamedTuple):
    """One message as it arrived from a broker: body bytes plus transport headers. Immutable (a named tuple:
    sources create one per message, and a tuple is several times cheaper to build than a frozen dataclass).

    ``headers`` carries transport metadata (Kafka record headers, e.g. CloudEvents binary mode ``ce_*``
    attributes, or Event Hubs application properties); ``position`` identifies where the message came from
    (``topic/partition@offset``, ``eventhub/partition@offset``, ``queue#message-id``) for dead-letter headers.
    """

    body: bytes
    headers: Mapping[str, bytes] = _NO_HEADERS
    source: str = ""
    position: str = ""


class PositionWriter(Protocol):
    """The half of a source that writes released positions upstream: the Kafka offset commit, the Event Hubs
    checkpoint, the SQS delete. One per source, shared by its batches; the pipeline's after-confirm owner
    (``bridge.pipeline.settlement``) calls it once per settled group however many of its batches completed."""

    async def flush(self) -> None:
        """Write every position that marks (``Release.mark``) made releasable since the last call, coalesced per
        partition or queue; a write that fails is kept and retried by the source."""
        ...


@dataclass(frozen=True, slots=True)
class Release:
    """How a batch gives its position back, split in the two steps the after-confirm owner drives: ``mark()``
    says the batch is done (no I/O: the source's checkpointer moves over the contiguous prefix of done batches),
    then ``writer.flush()`` writes what moved. Between the two, what the marks released can be read from the
    source (a transactional sink sends those positions with its transaction instead of the source writing them)."""

    mark: Callable[[], None]
    writer: PositionWriter

    async def ack(self) -> None:
        """Both steps at once (what ``SourceBatch.ack`` does for a batch with a ``Release``)."""
        self.mark()
        await self.writer.flush()


@dataclass(slots=True)
class SourceBatch:
    """A batch of raw messages with its release callbacks.

    ``ack`` is called once, after every event of the batch was delivered or deliberately dropped: the source
    releases its position. A source may split that in two (``release``: mark, then write; the pipeline then uses
    it instead of ``ack``, which is derived from it when not given). ``nack`` is called instead when the
    pipeline gives the batch up undelivered (shutdown past its grace period): the source hands it back for
    redelivery at once (SQS: visibility 0);
    ``None`` where there is nothing to do (Kafka, Event Hubs: the position simply stays unreleased). ``nbytes``
    is what the source charged to the memory budget for this batch (``bridge.limits``); the pipeline gives it
    back once the batch is admitted. Sources that do not use a budget leave it 0.
    """

    messages: Sequence[RawMessage]
    ack: AckFn | None = None
    source: str = ""
    nbytes: int = 0
    nack: AckFn | None = None
    release: Release | None = None
    lane: Lane | None = None
    """The input partition of every message, where the source is transactional (exactly-once), else ``None``."""

    def __post_init__(self) -> None:
        if self.ack is None and self.release is not None:
            self.ack = self.release.ack


Header = tuple[str, bytes]


class Lane(NamedTuple):
    """One input partition of a transactional source (exactly-once delivery, docs/design.md "Exactly once"): the
    records, dead letters, state and offsets of its events travel in that partition's own transactions. ``epoch``
    grows each time the source rewinds (an aborted transaction, a rebalance): a batch of an older epoch is stale
    and never admitted."""

    source: str
    topic: str
    partition: int
    epoch: int


class OutRecord(NamedTuple):
    """One record for the sink: ``route`` is the route name, or ``"deadletter"``."""

    route: str
    topic: str
    key: bytes | None
    value: bytes
    headers: list[Header]


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


class PublishError(RuntimeError):
    """A ``publish`` call did not get every record confirmed. ``permanent``: retrying cannot help (a record
    too large for the broker, invalid, or refused by authorization); the pipeline then isolates the offending
    records and dead-letters them instead of retrying forever. ``unconfirmed``: the records the broker did not
    acknowledge, in the order given (what the pipeline publishes again); ``None`` when the sink cannot tell, and
    then every record is."""

    def __init__(self, message: str, *, permanent: bool = False,
                 unconfirmed: Sequence[OutRecord] | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.unconfirmed = unconfirmed


@runtime_checkable
class Sink(Protocol):
    """Publishes records; ``publish`` returns only once every record is confirmed by the broker.

    It raises ``PublishError`` (``permanent=True`` when retrying cannot help) or any other exception if a record
    could not be delivered; the caller then retries or isolates, and no source position is released for
    undelivered records. ``encoder`` turns events and dead letters into this sink's record format; the pipeline
    calls it once per event, at admission. ``ready`` is True while the sink is connected (readiness); ``probe()``
    gives the broker check the readiness probes run (``bridge.health``), or ``None`` where there is none.
    """

    @property
    def encoder(self) -> Encoder: ...

    @property
    def ready(self) -> bool: ...

    def probe(self) -> Probe | None: ...

    async def start(self) -> None: ...

    async def publish(self, records: Sequence[OutRecord]) -> None: ...

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        """Hand ``records`` to the broker client and return, without waiting for the broker, an awaitable that
        completes once every one is confirmed (raising as ``publish`` would). Records of a later call are written
        after these on every partition, so the pipeline can keep a few groups in flight."""
        ...

    async def stop(self) -> None: ...


class HeldEvent(Protocol):
    """What an encoder reads back from an event the pipeline holds in encoded form (``bridge.pipeline.records``):
    the ``value`` and ``meta`` bytes it produced, plus the attributes the pipeline keeps beside them."""

    value: bytes
    meta: bytes
    seq: str
    dkey: tuple[str, str]
    late: bool


class Encoder(Protocol):
    """A sink's wire format (implementations: ``bridge.sinks.encoding``). ``encode`` runs once per event, at
    admission; ``record`` builds the outgoing record of a held event for one route at publish time;
    ``dead_letter`` builds a dead-letter record that always fits ``max_record_bytes`` (truncated if need be)
    with the held event's attributes in its headers when there is one."""

    max_record_bytes: int

    def encode(self, event: CloudEvent) -> tuple[bytes, bytes]: ...

    def record(self, route: str, topic: str, held: HeldEvent) -> OutRecord: ...

    def dead_letter(self, dead: DeadLetter, held: HeldEvent | None = None) -> OutRecord: ...

    def event_json(self, held: HeldEvent) -> bytes:
        """The CloudEvents JSON format of a held event."""
        ...


@runtime_checkable
class Source(Protocol):
    """Yields batches of raw messages; each batch's ``ack`` releases its position upstream.

    A source must tolerate acks arriving out of batch order and release positions only as a contiguous
    prefix (per partition) of acknowledged batches (``bridge.sources.checkpoint``). ``ready`` is True while it is
    connected and consuming (readiness, ``bridge_source_up``); ``lag()`` says how far behind it is where the
    broker tells it, per partition or queue (``bridge_consumer_lag``; empty when unknown); ``probe()`` gives the
    broker check the readiness probes run (``bridge.health``), or ``None`` where there is none.
    """

    name: str

    @property
    def ready(self) -> bool: ...

    def lag(self) -> Mapping[str, int]: ...

    def probe(self) -> Probe | None: ...

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[SourceBatch]: ...

    async def stop(self) -> None: ...
