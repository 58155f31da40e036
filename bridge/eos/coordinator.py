"""The coordinator of exactly-once delivery: the pipeline's ``Transactions`` (``bridge.pipeline.transactions``)
over the transactional Kafka sources and one producer per lane (docs/design.md, "Exactly once").

- ``send``: a group's records go to the producers of their lanes, with the lanes' changelog entries (and the
  tombstones of id batches that expired). Records of one key (subject) always reach Kafka in the group's order:
  when a key moves from one lane to another within a transaction, the new lane waits for the old lane's records
  to be acknowledged before its own are handed over (rare: upstream topics keyed by subject never do it).
- ``commit``: each source gives the offsets its settled batches released; every lane sends its own with its
  transaction and commits. A transaction aborted meanwhile (a rebalance) is never reported committed.
- ``rewind``: after an abort, a rebalance or at start: every source seeks back to its committed offsets (a new
  epoch), each lane it owns gets its producer (``init_transactions`` fences the partition's previous owner), and
  the lanes' changelog partitions are read back into the ``DurableState``. A lane whose producer was fenced is
  paused until the group assigns it again; if the group keeps it here for twice the session timeout, its
  producer is started anew.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.aio import completed
from bridge.eos.changelog import changelog_topic, entries, restore
from bridge.eos.producers import LaneFenced, LaneKey, LaneProducers
from bridge.kafka_common import KafkaClientSettings
from bridge.metrics import MetricGroup, Metrics
from bridge.model import Lane, OutRecord
from bridge.pipeline.transactions import DurableState, LaneChanges, TransactionAborted
from bridge.sinks.kafka import KafkaSink
from bridge.sources.kafka_txn import TransactionalKafkaSource

log = structlog.get_logger("bridge.eos")


class CoordinatorMetrics(MetricGroup):
    """What the exactly-once coordinator writes."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.fenced = m.counter("bridge_transactions_fenced",
                                "Lanes (input partitions) whose producer was fenced: another replica owns them now")
        self.restore_seconds = m.histogram("bridge_changelog_restore_seconds",
                                           "Time to read the changelog back after a rewind")


class ExactlyOnce:
    """See the module docstring."""

    def __init__(self, sources: Sequence[TransactionalKafkaSource], sink: KafkaSink, metrics: Metrics, *,
                 max_records: int, max_seconds: float, transaction_timeout_ms: int, dedup_window: float,
                 changelog: str | None = None, changelog_settings: KafkaClientSettings | None = None) -> None:
        self.sources = {s.name: s for s in sources}
        self.sink = sink
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.dedup_window = dedup_window
        self.metrics = CoordinatorMetrics(metrics)
        self.producers = LaneProducers(sink, transaction_timeout_ms=transaction_timeout_ms)
        self.settings = changelog_settings or KafkaClientSettings.model_validate(
            {k: getattr(sink.config, k) for k in KafkaClientSettings.model_fields})
        self.changelogs = {s.name: changelog_topic(s.config.group_id, changelog) for s in sources}
        self._lock = asyncio.Lock()  # commit, abort, rewind and the rebalance callbacks, one at a time
        self._restored: dict[str, int] = {}  # per source: the epoch whose state was restored
        self._assigned: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in sources}
        self._rewind_needed = True
        self._wakes: list[Callable[[], object]] = []
        self._generation = 0  # moves at every abort: a transaction of an older one never commits
        self._open_generation: int | None = None
        self._key_lane: dict[bytes, LaneKey] = {}
        self._lane_sent: dict[LaneKey, Awaitable[None]] = {}
        self._expiring: dict[LaneKey, deque[tuple[float, bytes]]] = {}
        self._fenced_at: dict[LaneKey, float] = {}
        self.session_timeout = max(s.config.session_timeout_ms for s in sources) / 1000 if sources else 10.0
        for s in sources:
            s.listener = self

    # -- start --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create each source's changelog topic (compacted) when it is missing."""
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            for name, source in self.sources.items():
                topic = self.changelogs[name]
                if topic in existing:
                    continue
                partitions = 1
                for t in source.config.topics:
                    described = await admin.describe_topics([t])
                    partitions = max(partitions, len(described[0].get("partitions", [])) if described else 1)
                brokers = len((await admin.describe_cluster()).get("brokers", [])) or 1
                replicas = min(3, brokers)  # as the state topic: CreateTopics v3 has no "broker default"
                await admin.create_topics([NewTopic(topic, partitions, replicas, topic_configs={
                    "cleanup.policy": "compact", "min.compaction.lag.ms": "0"})])
                log.info("eos.changelog_created", topic=topic, partitions=partitions, replication_factor=replicas)
        finally:
            await admin.close()

    # -- what the pipeline asks ---------------------------------------------------------------------
    def current(self, lane: Lane | None) -> bool:
        if lane is None:
            return False
        source = self.sources.get(lane.source)
        return (source is not None and lane.epoch == source.epoch and self._restored.get(lane.source) == lane.epoch
                and (lane.source, lane.topic, lane.partition) in self.producers)

    @property
    def rewind_needed(self) -> bool:
        return self._rewind_needed

    @property
    def restored(self) -> bool:
        """Every source's current epoch has its durable state restored: batches are admitted."""
        return not self._rewind_needed and all(
            self._restored.get(name) == s.epoch for name, s in self.sources.items())

    def on_rewind_needed(self, wake: object) -> None:
        assert callable(wake)
        self._wakes.append(wake)

    def _need_rewind(self) -> None:
        self._rewind_needed = True
        for wake in self._wakes:
            wake()

    def positions_pending(self) -> bool:
        return any(s.positions_pending() for s in self.sources.values())

    async def send(self, records: Sequence[tuple[Lane, OutRecord]],
                   changes: Mapping[Lane, LaneChanges]) -> Awaitable[None]:
        if self._open_generation is None:
            self._open_generation = self._generation
        by_lane: dict[LaneKey, list[OutRecord]] = {}
        waits: list[Awaitable[None]] = []
        key_lane, lane_sent = self._key_lane, self._lane_sent
        for lane, rec in records:
            lk = (lane.source, lane.topic, lane.partition)
            key = rec.key
            if key is not None and rec.route != "deadletter":
                before = key_lane.get(key)
                if before is not None and before != lk:  # the subject changes lanes: its earlier records first
                    waits.extend(await self._hand_over(by_lane, {}))
                    by_lane = {}
                    await lane_sent.get(before, completed())
                key_lane[key] = lk
            group = by_lane.get(lk)
            if group is None:
                group = by_lane[lk] = []
            group.append(rec)
        lane_changes = {(ln.source, ln.topic, ln.partition): ch for ln, ch in changes.items()}
        waits.extend(await self._hand_over(by_lane, lane_changes))
        return asyncio.ensure_future(_all(waits))

    async def _hand_over(self, by_lane: Mapping[LaneKey, list[OutRecord]],
                         changes: Mapping[LaneKey, LaneChanges]) -> list[Awaitable[None]]:
        waits: list[Awaitable[None]] = []
        for lk in {**by_lane, **changes}:
            lane_changes = changes.get(lk)
            items: list[tuple[bytes, bytes | None]] = []
            if lane_changes:
                tombstones = self._due_tombstones(lk)
                items, ids_key = entries(lk[1], lane_changes, tombstones)
                if ids_key is not None:
                    self._expiring.setdefault(lk, deque()).append((time.time() + self.dedup_window, ids_key))
            sent = await self.producers.send(lk, by_lane.get(lk, []), (self.changelogs[lk[0]], lk[2]), items)
            fut = asyncio.ensure_future(sent)
            self._lane_sent[lk] = fut
            waits.append(fut)
        return waits

    def _due_tombstones(self, lane: LaneKey) -> list[bytes]:
        queue = self._expiring.get(lane)
        now = time.time()
        out: list[bytes] = []
        while queue and queue[0][0] <= now:
            out.append(queue.popleft()[1])
        return out

    async def commit(self) -> None:
        async with self._lock:
            if self._open_generation is not None and self._open_generation != self._generation:
                self._open_generation = None
                raise TransactionAborted("the transaction was aborted meanwhile (a rebalance)")
            offsets: dict[LaneKey, dict[TopicPartition, int]] = {}
            taken: dict[str, dict[TopicPartition, int]] = {}
            for name, source in self.sources.items():
                taken[name] = positions = source.take_positions()
                for tp, off in positions.items():
                    offsets.setdefault((name, tp.topic, tp.partition), {})[tp] = off
            try:
                await self.producers.commit(offsets)
            except LaneFenced as exc:
                await self.producers.close(exc.lane)
                self._fenced(exc.lane)
                raise TransactionAborted(f"producer fenced: {exc}") from exc
            except Exception as exc:
                raise TransactionAborted(f"commit failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self._open_generation = None
                self._key_lane.clear()
                self._lane_sent.clear()
            for name, positions in taken.items():
                self.sources[name].committed_positions(positions)

    async def abort(self) -> None:
        async with self._lock:
            await self._abort()

    async def _abort(self) -> None:
        self._generation += 1
        self._open_generation = None
        self._key_lane.clear()
        self._lane_sent.clear()
        for lane in await self.producers.abort():
            self._fenced(lane)

    def _fenced(self, lane: LaneKey) -> None:
        self.metrics.fenced.inc()
        self._fenced_at[lane] = time.monotonic()
        source = self.sources.get(lane[0])
        if source is not None:
            source.pause_fenced([TopicPartition(lane[1], lane[2])])
        log.warning("eos.fenced", lane=f"{lane[1]}/{lane[2]}",
                    detail="another replica owns this partition now: stopped consuming it")
        self._need_rewind()
        # still ours after twice the session timeout (the group would have taken it away): take it up again
        asyncio.get_running_loop().call_later(2 * self.session_timeout + 0.5, self._need_rewind)

    async def rewind(self) -> DurableState:
        for event in self._assigned.values():  # not while a rebalance is on its way: after its assignment
            await event.wait()
        async with self._lock:
            await self._abort()
            self._rewind_needed = False
            lanes: list[tuple[str, str, int]] = []
            for name, source in self.sources.items():
                assigned = source.assignment()
                for lk in self.producers.lanes:  # partitions the group took away: their producers go
                    if lk[0] == name and TopicPartition(lk[1], lk[2]) not in assigned:
                        await self.producers.close(lk)
                for tp in sorted(assigned):
                    lk = (name, tp.topic, tp.partition)
                    fenced = self._fenced_at.get(lk)
                    if fenced is not None and time.monotonic() - fenced < 2 * self.session_timeout:
                        continue  # paused: another replica owns it unless the group says otherwise soon
                    if self._fenced_at.pop(lk, None) is not None:
                        source.resume_fenced([tp])
                    # first fence the partition's previous owner, then read its committed offsets: a zombie's
                    # commit lands before this (and is read) or is refused after it, never in between
                    await self.producers.open(lk, source.config.group_id)
                    lanes.append(lk)
            epochs: dict[str, int] = {}
            for name, source in self.sources.items():
                await source.rewind()
                epochs[name] = source.epoch  # a rebalance after this point moves it on: admitted after a rewind
            state = DurableState()
            for name in self.sources:
                mine = [(t, p) for n, t, p in lanes if n == name]
                restored = await restore(self.settings, self.changelogs[name], mine, self.dedup_window)
                self.metrics.restore_seconds.observe(restored.seconds)
                state.ids.extend(restored.state.ids)
                state.seqs.update(restored.state.seqs)
                state.plugin.extend(restored.state.plugin)
                for (topic, partition), keys in restored.expired.items():
                    lk = (name, topic, partition)
                    self._expiring.setdefault(lk, deque()).extendleft((0.0, k) for k in keys)
                for (topic, partition), live in restored.live.items():
                    lk = (name, topic, partition)
                    queue = self._expiring.setdefault(lk, deque())
                    known = {k for _, k in queue}
                    queue.extend((when + self.dedup_window, k) for when, k in live if k not in known)
                log.info("eos.restored", source=name, lanes=len(mine), records=restored.records,
                         seconds=round(restored.seconds, 3), ids=sum(len(b) for _, b in restored.state.ids))
            state.ids.sort(key=lambda b: -b[0])  # oldest first
            self._restored.update(epochs)
            return state

    async def close(self) -> None:
        async with self._lock:
            await self._abort()
            await self.producers.close_all()

    # -- the sources' consumer groups (LaneListener) ------------------------------------------------
    async def lanes_revoked(self, source: TransactionalKafkaSource, partitions: Sequence[TopicPartition]) -> None:
        """No lock here (the consumer's group routine waits for this): the open transactions can no longer commit
        (the generation moves), the worker aborts them and rewinds after the assignment; the partitions' new
        owner fences this replica's producers anyway."""
        self._assigned[source.name].clear()
        self._generation += 1
        self._need_rewind()

    async def lanes_assigned(self, source: TransactionalKafkaSource, partitions: Sequence[TopicPartition]) -> None:
        for lk in [k for k in self._fenced_at if k[0] == source.name]:
            self._fenced_at.pop(lk)  # the group decided: what it assigns here is ours
        self._assigned[source.name].set()
        self._need_rewind()


async def _all(waits: list[Awaitable[None]]) -> None:
    for w in waits:
        await w
