"""The Kafka source of exactly-once delivery: ``read_committed``, one batch per partition, offsets committed in
transactions (docs/design.md, "Exactly once").

It is the consumer-group source of ``bridge.sources.kafka`` with four differences:

- it reads ``read_committed``: records of an aborted upstream transaction are never bridged;
- each poll gives one batch per partition, stamped with its ``Lane`` (source, topic, partition, epoch), so the
  records of a partition travel in that partition's transactions;
- it never commits offsets itself: ``take_positions()`` hands the offsets that settled batches released to the
  transactions, which send them with their records (``send_offsets_to_transaction``);
- ``rewind()`` seeks every assigned partition back to its committed offset and starts a new epoch: batches of
  an older epoch are stale and never admitted (their records come again). A rebalance starts a new epoch too,
  and tells the ``LaneListener`` (the transactions) which partitions were revoked and assigned.

A partition whose producer was fenced (another replica owns it now) is paused until the group assigns it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from bridge.limits import batch_bytes
from bridge.model import Lane, RawMessage, Release, SourceBatch
from bridge.sources.checkpoint import Checkpointer
from bridge.sources.kafka import KafkaSource, _headers, _tps

log = structlog.get_logger(__name__)


class LaneListener(Protocol):
    """What the transactions need to hear from the source's consumer group."""

    async def lanes_revoked(self, source: TransactionalKafkaSource, partitions: Sequence[TopicPartition]) -> None:
        """Before the group takes ``partitions`` away: their open transactions must end now."""
        ...

    async def lanes_assigned(self, source: TransactionalKafkaSource, partitions: Sequence[TopicPartition]) -> None:
        """After the group gave ``partitions`` (all of this member's partitions, eager rebalance)."""
        ...


class TransactionalKafkaSource(KafkaSource):
    """See the module docstring."""

    listener: LaneListener | None = None
    epoch = 0

    def _extra_consumer_kwargs(self) -> dict[str, Any]:
        return {"isolation_level": "read_committed"}

    def _start_committing(self) -> None:
        """No commit task: the offsets are committed in transactions."""

    async def commit_ready(self) -> bool:
        """Never commits outside a transaction (``stop`` leaves the offsets where the last transaction put them)."""
        return True

    async def flush(self) -> None:
        """Nothing to write: the transactions take the positions (``take_positions``)."""

    # -- batches ------------------------------------------------------------------------------------
    def _make_batches(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> list[SourceBatch]:
        checkpoints = self._checkpoints
        name, epoch = self.name, self.epoch
        out: list[SourceBatch] = []
        for tp, records in fetched.items():
            if not records:
                continue
            span = [checkpoints.track(tp, records[-1].offset + 1)]
            self._fetched[tp] = records[-1].offset + 1
            prefix = f"{tp.topic}/{tp.partition}@"
            messages = [RawMessage(body=r.value if r.value is not None else b"", headers=_headers(r.headers),
                                   source=name, position=f"{prefix}{r.offset}") for r in records]
            nbytes = sum(max(0, r.serialized_value_size) + (64 * len(r.headers) if r.headers else 0) for r in records)

            def mark(span: list[Any] = span, checkpoints: Checkpointer[TopicPartition, int] = checkpoints) -> None:
                checkpoints.done(span)

            out.append(SourceBatch(messages=messages, source=name, nbytes=batch_bytes(nbytes, len(messages)),
                                   release=Release(mark, self), lane=Lane(name, tp.topic, tp.partition, epoch)))
        return out

    # -- the transactions' side ---------------------------------------------------------------------
    def current(self, lane: Lane) -> bool:
        """A batch of ``lane`` is of this epoch (not fetched before a rewind or a rebalance)."""
        return lane.epoch == self.epoch

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def take_positions(self) -> dict[TopicPartition, int]:
        """The offsets settled batches released since the last call, for partitions still assigned."""
        ready = self._checkpoints.take_ready()
        assigned = self.assignment()
        return {tp: off for tp, off in ready.items() if tp in assigned}

    def positions_pending(self) -> bool:
        return self._checkpoints.has_ready

    def restore_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        """Offsets taken for a transaction that did not commit: released again by the next one (unless a rewind
        drops them first)."""
        self._checkpoints.restore(positions)

    def committed_positions(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    async def rewind(self) -> dict[TopicPartition, int]:
        """A new epoch: forget every batch in flight, seek every assigned partition back to its committed offset
        (or per ``auto_offset_reset`` where there is none). The offsets are looked up first and the epoch moves
        with the seeks, with no await between: a batch made after the new epoch began comes from the new
        positions. Returns the offsets sought."""
        consumer = self._consumer
        if consumer is None:
            self.epoch += 1
            self._checkpoints = Checkpointer()
            return {}
        assigned = sorted(consumer.assignment())
        sought: dict[TopicPartition, int] = {}
        missing: list[TopicPartition] = []
        for tp in assigned:
            offset = await consumer.committed(tp)
            if offset is None:
                missing.append(tp)
            else:
                sought[tp] = offset
        if missing:
            reset = (await consumer.beginning_offsets(missing) if self.config.auto_offset_reset == "earliest"
                     else await consumer.end_offsets(missing))
            sought.update(reset)
        self.epoch += 1
        self._checkpoints = Checkpointer()
        for tp, offset in sought.items():
            if tp in consumer.assignment():
                consumer.seek(tp, offset)
        log.info("kafka.rewound", source=self.name, epoch=self.epoch,
                 offsets={f"{tp.topic}/{tp.partition}": off for tp, off in sought.items()})
        return sought

    def pause_fenced(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop fetching partitions whose producer was fenced (another member owns them) until reassigned."""
        consumer = self._consumer
        if consumer is None:
            return
        mine = [tp for tp in partitions if tp in consumer.assignment()]
        if mine:
            consumer.pause(*mine)
            log.warning("kafka.fenced_paused", source=self.name, partitions=_tps(mine),
                        detail="another member owns these partitions now; paused until the group assigns them again")

    def resume_fenced(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch again partitions paused as fenced that the group kept here (this member owns them)."""
        consumer = self._consumer
        if consumer is None:
            return
        mine = [tp for tp in partitions if tp in consumer.paused()]
        if mine:
            consumer.resume(*mine)
            log.info("kafka.fenced_resumed", source=self.name, partitions=_tps(mine),
                     detail="still assigned here after twice the session timeout: this member owns them")

    # -- rebalance ----------------------------------------------------------------------------------
    async def _on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.epoch += 1
        self._checkpoints.revoke(revoked)
        if self.listener is not None:
            await self.listener.lanes_revoked(self, revoked)
        log.info("kafka.partitions_revoked", source=self.name, partitions=_tps(revoked),
                 detail="their open transactions aborted")

    async def _on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.epoch += 1
        self._checkpoints = Checkpointer()
        consumer = self._consumer
        if consumer is not None and consumer.paused():
            consumer.resume(*consumer.paused())  # fenced partitions assigned again; the budget pauses anew if full
        if self.listener is not None:
            await self.listener.lanes_assigned(self, assigned)
        log.info("kafka.partitions_assigned", source=self.name, partitions=_tps(assigned), epoch=self.epoch)
