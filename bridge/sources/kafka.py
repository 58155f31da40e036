"""Kafka source: a consumer group yielding one ``SourceBatch`` per poll, committing only acked prefixes.

Each ``getmany()`` poll becomes one batch (it may span partitions). A batch's release (``bridge.model.Release``)
marks its offset span of every partition done in the source's ``Checkpointer`` (``bridge.sources.checkpoint``),
which advances each partition's commit only over a contiguous prefix of done spans (batches acked out of order never
move the commit past an unacked one); ``flush`` (the source is its batches' ``PositionWriter``) wakes a background
task that commits everything ready in one request, then waits for more (commits are coalesced). On rebalance the
revoked partitions' contiguous-done offsets are committed and their pending state dropped; a late ack for a revoked
partition is ignored (its records are redelivered to the new owner: at least once).

Memory: each batch is charged to the memory budget (``bridge.limits``) until the pipeline admits it; while
the budget is full the source pauses its partitions (``consumer.pause``) and keeps polling, so the consumer
stays in its group without fetching, and resumes once there is room. The fetch sizes are capped by the
budget's share for sources.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError
from pydantic import Field

from bridge.aio import cancelled_from_outside
from bridge.kafka_common import KafkaClientSettings
from bridge.kafka_oauth import SaslOAuthConfig
from bridge.limits import MemoryBudget, batch_bytes
from bridge.model import Probe, RawMessage, Release, SourceBatch
from bridge.retry import COMMIT
from bridge.sources.checkpoint import Checkpointer, Ticket
from bridge.sources.registry import SourceConnector, SourceResources, register

log = structlog.get_logger(__name__)


class KafkaSourceConfig(KafkaClientSettings):
    """Configuration of the Kafka source (connection/security fields come from ``KafkaClientSettings``)."""

    type: Literal["kafka"] = Field("kafka", description="source type")
    name: str = Field("kafka", description="source name (metrics label, trust.sources key)")
    topics: list[str] = Field(
        default_factory=lambda: ["ml.events.raw"], min_length=1, description="topics to consume (raw events)"
    )
    group_id: str = Field(
        "ml-event-bridge", description="consumer group: replicas sharing it split the partitions and its commits"
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group without a committed offset starts: the oldest or only new records"
    )
    max_batch_size: int = Field(1000, ge=1, description="records per batch handed to the pipeline at most")
    fetch_max_wait_ms: int = Field(
        500, ge=0, description="longest time the broker waits for data to fill a fetch before answering"
    )
    fetch_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1,
        description="bytes one fetch asks for at most (also capped by the memory budget's share for sources)",
    )
    max_partition_fetch_bytes: int = Field(
        1024 * 1024, ge=1,
        description="bytes one fetch asks for per partition at most (capped by the memory budget; a larger record "
        "is still fetched, alone)",
    )
    poll_timeout_ms: int = Field(1000, ge=1, description="longest wait of one poll for records before polling again")
    session_timeout_ms: int = Field(
        10_000, description="the group drops a consumer whose heartbeats stop for this long (its partitions move)"
    )
    heartbeat_interval_ms: int = Field(3_000, description="how often the consumer heartbeats to the group coordinator")
    max_poll_interval_ms: int = Field(
        300_000, description="longest time between polls before the consumer is considered failed and leaves the group"
    )
    commit_interval_ms: int = Field(
        0, ge=0,
        description="coalescing window before an offset commit; 0 = commit at once (acks during a commit join the "
        "next one)",
    )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._source._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._source._on_assigned(assigned)


def _tps(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in tps)


def _headers(raw: Sequence[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    if not raw:
        return {}
    return {key: value if value is not None else b"" for key, value in raw}


class KafkaSource:
    """Consumer-group Kafka source; see the module docstring for the commit discipline."""

    def __init__(
        self,
        config: KafkaSourceConfig,
        *,
        budget: MemoryBudget | None = None,
        prefetch_bytes: int | None = None,
        **client_overrides: Any,
    ) -> None:
        self.config = config
        self.name = config.name
        self._budget = budget
        self._prefetch_bytes = prefetch_bytes
        self._paused = False
        self._client_overrides = client_overrides
        self._consumer: AIOKafkaConsumer | None = None
        self._checkpoints: Checkpointer[TopicPartition, int] = Checkpointer()
        self._commit_wanted = asyncio.Event()
        self._moved = False  # a mark moved a releasable offset since the last flush
        self._commit_lock = asyncio.Lock()
        self._commit_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.committed: dict[TopicPartition, int] = {}
        """Last offsets this source committed successfully (for metrics and tests)."""
        self._fetched: dict[TopicPartition, int] = {}  # next offset to fetch, per partition (for lag)

    @property
    def ready(self) -> bool:
        return self._consumer is not None and not self._stopping

    def probe(self) -> Probe | None:
        """Cluster metadata through the consumer's client, once started."""
        consumer = self._consumer
        return consumer._client.fetch_all_metadata if consumer is not None else None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"Kafka source {self.name} is not started")
        return self._consumer

    def lag(self) -> dict[str, int]:
        """Messages between what this source fetched and the partition's high watermark, per partition
        (from the broker's last fetch response; partitions not fetched yet are omitted)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[str, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            pos = self._fetched.get(tp)
            if high is not None and pos is not None:
                out[f"{tp.topic}/{tp.partition}"] = max(0, high - pos)
        return out

    def fetch_sizes(self) -> tuple[int, int]:
        """(fetch_max_bytes, max_partition_fetch_bytes): the configured ones, capped by the budget's share for
        sources (the consumer buffers up to one fetch per partition; a record larger than the per-partition
        size is still fetched, alone)."""
        cfg = self.config
        total, per_partition = cfg.fetch_max_bytes, cfg.max_partition_fetch_bytes
        cap = self._prefetch_bytes
        if cap is not None:
            total = max(64 * 1024, min(total, cap // 2))
            per_partition = max(16 * 1024, min(per_partition, cap // 16))
        return total, per_partition

    async def start(self) -> None:
        cfg = self.config
        kwargs = cfg.client_kwargs()
        fetch_max_bytes, max_partition_fetch_bytes = self.fetch_sizes()
        kwargs.update(
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            max_poll_records=cfg.max_batch_size,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            fetch_max_bytes=fetch_max_bytes,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
        )
        kwargs.update(self._client_overrides)
        kwargs.update(self._extra_consumer_kwargs())
        self._checkpoints = Checkpointer()
        consumer = AIOKafkaConsumer(**kwargs)
        consumer.subscribe(topics=list(cfg.topics), listener=_Rebalance(self))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # release its connections before the caller retries
            raise
        self._consumer = consumer
        self._stopping = False
        self._paused = False
        self._start_committing()
        log.info("kafka.source_started", source=self.name, topics=cfg.topics, group=cfg.group_id)

    def _extra_consumer_kwargs(self) -> dict[str, Any]:
        """Consumer settings a subclass adds (the transactional source reads ``read_committed``)."""
        return {}

    def _start_committing(self) -> None:
        """The commit task (a transactional source commits its offsets in transactions instead)."""
        self._commit_task = asyncio.create_task(self._commit_loop(), name=f"kafka-commit-{self.name}")

    async def batches(self) -> AsyncGenerator[SourceBatch, None]:
        consumer = self.consumer
        timeout = self.config.poll_timeout_ms
        limit = self.config.max_batch_size
        budget = self._budget
        while not self._stopping:
            wait = timeout
            if budget is not None:
                if budget.full:
                    self._pause(consumer)
                    wait = min(timeout, 100)  # keep polling (group membership) while paused
                elif self._paused:
                    self._resume(consumer)
            try:
                fetched = await consumer.getmany(timeout_ms=wait, max_records=limit)
            except ConsumerStoppedError:
                return
            if fetched:
                for batch in self._make_batches(fetched):
                    if budget is not None:
                        budget.charge("source", batch.nbytes)
                    yield batch

    def _pause(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        todo = assigned - consumer.paused()
        if todo:  # also partitions assigned by a rebalance while paused
            consumer.pause(*todo)
        if not self._paused:
            self._paused = True
            log.info("kafka.paused", source=self.name, reason="memory budget full", partitions=_tps(assigned))

    def _resume(self, consumer: AIOKafkaConsumer) -> None:
        paused = consumer.paused()
        if paused:
            consumer.resume(*paused)
        self._paused = False
        log.info("kafka.resumed", source=self.name)

    def _make_batches(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> list[SourceBatch]:
        """One batch per poll (it may span partitions)."""
        return [self._make_batch(fetched)]

    def _make_batch(self, fetched: Mapping[TopicPartition, Sequence[Any]]) -> SourceBatch:
        messages: list[RawMessage] = []
        spans: list[Ticket[TopicPartition, int]] = []
        name = self.name
        nbytes = 0
        checkpoints = self._checkpoints  # a restart gets a new one; acks of older batches stay with this one
        for tp, records in fetched.items():
            if not records:
                continue
            spans.append(checkpoints.track(tp, records[-1].offset + 1))
            self._fetched[tp] = records[-1].offset + 1
            prefix = f"{tp.topic}/{tp.partition}@"
            messages.extend(
                RawMessage(
                    body=record.value if record.value is not None else b"",
                    headers=_headers(record.headers),
                    source=name,
                    position=f"{prefix}{record.offset}",
                )
                for record in records
            )
            for record in records:
                nbytes += max(0, record.serialized_value_size) + (64 * len(record.headers) if record.headers else 0)

        def mark() -> None:
            if checkpoints.done(spans) and checkpoints is self._checkpoints:
                self._moved = True

        return SourceBatch(messages=messages, source=name, nbytes=batch_bytes(nbytes, len(messages)),
                           release=Release(mark, self))

    async def flush(self) -> None:
        """Have the commit task commit the offsets that marks made ready (``PositionWriter``)."""
        if self._moved:
            self._moved = False
            self._commit_wanted.set()

    async def _commit_loop(self) -> None:
        """Commit what acks made ready; never ends before ``stop()``: a failed commit (also a cancellation
        raised from inside the client, which is not ``stop()`` cancelling this task) is retried."""
        interval = self.config.commit_interval_ms / 1000
        retries = COMMIT.retries()
        while True:
            await self._commit_wanted.wait()
            if interval:
                await asyncio.sleep(interval)  # coalescing window: acks arriving meanwhile join this commit
            self._commit_wanted.clear()
            try:
                ok = await self.commit_ready()
            except asyncio.CancelledError:
                if cancelled_from_outside(self._stopping):
                    raise
                log.warning("kafka.commit_interrupted", source=self.name, detail="cancelled inside the client")
                ok = False
            if ok:
                retries.succeeded()
            else:
                await asyncio.sleep(retries.failed())  # back off, then retry what was restored
                self._commit_wanted.set()

    async def commit_ready(self) -> bool:
        """Commit every contiguous-done offset now; False if the commit failed (offsets kept for retry)."""
        async with self._commit_lock:
            offsets = self._checkpoints.take_ready()
            if not offsets or self._consumer is None:
                return True
            assigned = self._consumer.assignment()
            offsets = {tp: off for tp, off in offsets.items() if tp in assigned}
            if not offsets:
                return True
            try:
                await self._consumer.commit(offsets)
            except asyncio.CancelledError:
                self._checkpoints.restore(offsets)
                raise
            except Exception as exc:  # KafkaError, or a consumer closing under us: keep offsets, retry
                self._checkpoints.restore(offsets)
                log.warning("kafka.commit_failed", source=self.name, error=repr(exc), offsets=_fmt(offsets))
                return False
            self.committed.update(offsets)
            log.debug("kafka.committed", source=self.name, offsets=_fmt(offsets))
            return True

    async def _on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("kafka.partitions_assigned", source=self.name, partitions=_tps(assigned))

    async def _on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._commit_lock:
            offsets = self._checkpoints.revoke(revoked)
            if offsets and self._consumer is not None:
                try:
                    await self._consumer.commit(offsets)
                    self.committed.update(offsets)
                except Exception as exc:
                    log.warning("kafka.revoke_commit_failed", source=self.name, error=repr(exc))
        log.info(
            "kafka.partitions_revoked", source=self.name, partitions=_tps(revoked), committed=_fmt(offsets)
        )

    async def stop(self) -> None:
        """Stop polling, commit whatever is contiguous-done, leave the group."""
        self._stopping = True
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
            self._commit_task = None
        if self._consumer is not None:
            try:
                await self.commit_ready()
            finally:
                consumer, self._consumer = self._consumer, None
                self._checkpoints.revoke(list(self._checkpoints.partitions))  # later acks of this run: ignored
                await consumer.stop()
        log.info("kafka.source_stopped", source=self.name)


def _fmt(offsets: Mapping[TopicPartition, int]) -> dict[str, int]:
    return {f"{tp.topic}/{tp.partition}": off for tp, off in offsets.items()}


def _build(config: KafkaSourceConfig, resources: SourceResources) -> KafkaSource:
    return KafkaSource(config, budget=resources.budget, prefetch_bytes=resources.prefetch_bytes)


CONNECTOR = register(SourceConnector(
    tag="kafka",
    config=KafkaSourceConfig,
    build=_build,
    summary="Kafka consumer group; also Event Hubs' Kafka endpoint, MSK.",
    docs=(("sasl_oauth", SaslOAuthConfig, "OAUTHBEARER tokens without keys (also `sink.sasl_oauth`): Entra ID for "
           "Event Hubs' Kafka endpoint, IAM for Amazon MSK; refreshed before they expire."),),
))
