"""One transactional producer per lane (input partition), as Kafka Streams did before EOS v2.

aiokafka's transactions are protocol v0: ``send_offsets_to_transaction`` carries a group id, not the consumer's
group metadata (no KIP-447), so the group coordinator cannot refuse a zombie's offsets. Fencing comes from the
transactional id instead: ``<group_id>-<topic>-<partition>`` is the same for whichever replica owns the
partition, and the new owner's producer (``init_transactions`` at start) bumps its epoch: a zombie's open
transaction is aborted and its next transactional request fails with ``ProducerFenced``.

A lane's transaction begins with its first record (or offsets); records go through the sink's batching
(``KafkaSink.enqueue_on``); the changelog entries go to the lane's own changelog partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from bridge.aio import completed
from bridge.model import OutRecord
from bridge.sinks.kafka import KafkaSink

log = structlog.get_logger("bridge.eos")

LaneKey = tuple[str, str, int]
"""(source, topic, partition)."""


class LaneFenced(RuntimeError):
    """Another producer with the lane's transactional id started: that replica owns the partition now."""

    def __init__(self, lane: LaneKey, error: BaseException) -> None:
        super().__init__(f"{lane[1]}/{lane[2]}: {type(error).__name__}: {error}")
        self.lane = lane


@dataclass(slots=True, eq=False)
class _Lane:
    key: LaneKey
    transactional_id: str
    producer: AIOKafkaProducer
    group_id: str
    in_txn: bool = False
    broken: bool = False  # a request failed: the producer is replaced before the lane's next transaction


class LaneProducers:
    """The transactional producers of the lanes this replica owns."""

    def __init__(self, sink: KafkaSink, *, transaction_timeout_ms: int, close_timeout: float = 10.0) -> None:
        self.sink = sink
        self.transaction_timeout_ms = transaction_timeout_ms
        self.close_timeout = close_timeout
        self._lanes: dict[LaneKey, _Lane] = {}

    def __contains__(self, lane: LaneKey) -> bool:
        return lane in self._lanes and not self._lanes[lane].broken

    @property
    def lanes(self) -> list[LaneKey]:
        return list(self._lanes)

    def open_transactions(self) -> list[LaneKey]:
        return [k for k, lane in self._lanes.items() if lane.in_txn]

    async def open(self, lane: LaneKey, group_id: str) -> None:
        """Start the lane's producer (``init_transactions``: fences the partition's previous owner)."""
        known = self._lanes.get(lane)
        if known is not None and not known.broken:
            return
        if known is not None:
            await self.close(lane)
        tid = f"{group_id}-{lane[1]}-{lane[2]}"
        kwargs = self.sink.producer_kwargs()
        kwargs.update(transactional_id=tid, transaction_timeout_ms=self.transaction_timeout_ms,
                      enable_idempotence=True, acks="all", client_id=f"{kwargs.get('client_id', 'bridge')}-{tid}")
        producer = AIOKafkaProducer(**kwargs)
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.close_timeout)
            raise
        self._lanes[lane] = _Lane(lane, tid, producer, group_id)
        log.info("eos.producer_started", transactional_id=tid)

    async def close(self, lane: LaneKey) -> None:
        known = self._lanes.pop(lane, None)
        if known is not None:
            with contextlib.suppress(Exception):  # a fenced or broken producer may refuse to stop cleanly
                await asyncio.wait_for(known.producer.stop(), self.close_timeout)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(lane) for lane in list(self._lanes)))

    def _get(self, lane: LaneKey) -> _Lane:
        known = self._lanes.get(lane)
        if known is None or known.broken:
            raise RuntimeError(f"no producer for lane {lane[1]}/{lane[2]}")
        return known

    async def _begin(self, lane: _Lane) -> None:
        if not lane.in_txn:
            try:
                await lane.producer.begin_transaction()
            except ProducerFenced as exc:
                lane.broken = True
                raise LaneFenced(lane.key, exc) from exc
            lane.in_txn = True

    async def send(self, lane: LaneKey, records: Sequence[OutRecord], changelog: tuple[str, int] | None,
                   entries: Sequence[tuple[bytes, bytes | None]]) -> Awaitable[None]:
        """Hand ``records`` and the changelog ``entries`` (to ``changelog`` = (topic, partition)) to the lane's
        transaction; the awaitable completes when the broker has them all."""
        known = self._get(lane)
        await self._begin(known)
        waits: list[Awaitable[Any]] = []
        if records:
            waits.append(await self.sink.enqueue_on(known.producer, records))
        if entries and changelog is not None:
            producer = known.producer
            batch = producer.create_batch()
            for key, value in entries:
                if batch.append(timestamp=None, key=key, value=value, headers=[]) is None:
                    waits.append(await producer.send_batch(batch, changelog[0], partition=changelog[1]))
                    batch = producer.create_batch()
                    batch.append(timestamp=None, key=key, value=value, headers=[])
            if batch.record_count():
                waits.append(await producer.send_batch(batch, changelog[0], partition=changelog[1]))
        if not waits:
            return completed()
        return asyncio.ensure_future(_all(waits))

    async def commit(self, offsets: Mapping[LaneKey, Mapping[TopicPartition, int]]) -> None:
        """Send each lane's offsets with its transaction and commit every open transaction (lanes with offsets
        only begin one). Raises the first failure after every lane finished; fenced lanes raise ``LaneFenced``."""
        todo = set(self.open_transactions()) | {k for k, offs in offsets.items() if offs and k in self._lanes}
        results = await asyncio.gather(*(self._commit_lane(self._lanes[k], offsets.get(k, {})) for k in todo),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, LaneFenced)), errors[0])

    async def _commit_lane(self, lane: _Lane, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self._begin(lane)
            if offsets:
                await lane.producer.send_offsets_to_transaction(dict(offsets), lane.group_id)
            await lane.producer.commit_transaction()
            lane.in_txn = False
        except ProducerFenced as exc:
            lane.broken, lane.in_txn = True, False
            raise LaneFenced(lane.key, exc) from exc
        except BaseException:
            lane.broken, lane.in_txn = True, False
            raise

    async def abort(self) -> list[LaneKey]:
        """Abort every open transaction; lanes whose abort fails are marked broken (replaced before their next
        transaction; the broker aborts what they left at the transaction timeout, or when the new producer
        starts). Returns the lanes found fenced."""
        fenced: list[LaneKey] = []
        for lane in list(self._lanes.values()):
            fatal = _fatal_error(lane.producer)
            if isinstance(fatal, ProducerFenced):  # its sender stopped on the fence (a send, not the commit, saw it)
                fenced.append(lane.key)
                await self.close(lane.key)  # reported once: a later owner of the lane starts a new producer
                continue
            if not lane.in_txn and not lane.broken:
                continue
            if lane.in_txn and not lane.broken and fatal is None:
                try:
                    await asyncio.wait_for(lane.producer.abort_transaction(), self.close_timeout)
                    lane.in_txn = False
                    continue
                except ProducerFenced:
                    fenced.append(lane.key)
                    await self.close(lane.key)
                    continue
                except Exception as exc:
                    log.warning("eos.abort_failed", transactional_id=lane.transactional_id,
                                error=f"{type(exc).__name__}: {exc}")
            lane.broken, lane.in_txn = True, False
        return fenced

    def broken(self) -> list[LaneKey]:
        return [k for k, lane in self._lanes.items() if lane.broken]


def _fatal_error(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that stopped a transactional producer's sender for good (aiokafka keeps it in its transaction
    manager: fenced, out-of-order sequence, authorization), or None."""
    txn = getattr(producer, "_txn_manager", None)
    if txn is None or not txn.is_fatal_error():
        return None
    waiter = getattr(txn, "_transaction_waiter", None)
    if waiter is None or not waiter.done() or waiter.cancelled():
        return RuntimeError("transactional producer in a fatal state")
    error = waiter.exception()
    return error if error is not None else RuntimeError("transactional producer in a fatal state")


async def _all(waits: list[Awaitable[Any]]) -> None:
    for w in waits:
        await w
