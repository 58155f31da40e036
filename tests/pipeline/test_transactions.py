"""The pipeline's side of exactly-once delivery, on in-memory transactions: each group's records go out with their
lane and the durable state they change, a commit takes the offsets the settled batches released, a failed commit
rewinds to what was committed (nothing lost, nothing twice), and batches of an older epoch are never admitted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import orjson

from bridge.app import build_pipeline
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.model import Lane, OutRecord, RawMessage, Release, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.pipeline.transactions import DurableState, LaneChanges, TransactionAborted, group_changes
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink


class MemoryTransactions:
    """Transactions kept in memory: an open transaction's records, changes and offsets become ``committed`` at
    commit; ``fail_commits`` makes the next commits fail; ``rewind`` returns the state committed so far."""

    max_records = 1000
    max_seconds = 0.05

    def __init__(self) -> None:
        self.epoch = 0
        self.restored_epoch = -1
        self.committed: list[tuple[Lane, OutRecord]] = []
        self.committed_changes: list[LaneChanges] = []
        self.offsets: dict[tuple[str, int], int] = {}
        self.fail_commits = 0
        self.rewinds = 0
        self._open: list[tuple[Lane, OutRecord]] = []
        self._open_changes: list[LaneChanges] = []
        self._released: dict[tuple[str, int], int] = {}
        self._wakes: list[Any] = []
        self.rewind_requested = False

    # the source's side: batches whose release marks a position of their lane
    def batch(self, partition: int, events: Sequence[dict[str, Any]], epoch: int | None = None) -> SourceBatch:
        lane = Lane("kafka", "in", partition, self.epoch if epoch is None else epoch)
        end = max((int(e["id"].split("-")[1]) for e in events), default=0) + 1

        def mark() -> None:
            if lane.epoch == self.epoch:
                key = (lane.topic, lane.partition)
                self._released[key] = max(self._released.get(key, 0), end)

        class _Writer:
            async def flush(self) -> None:
                return None

        msgs = [RawMessage(orjson.dumps(e), source="kafka", position=f"in/{partition}@{e['id']}") for e in events]
        return SourceBatch(msgs, source="kafka", release=Release(mark, _Writer()), lane=lane)

    # Transactions
    def current(self, lane: Lane | None) -> bool:
        return lane is not None and lane.epoch == self.epoch == self.restored_epoch

    @property
    def rewind_needed(self) -> bool:
        return self.rewind_requested

    def on_rewind_needed(self, wake: object) -> None:
        self._wakes.append(wake)

    def positions_pending(self) -> bool:
        return bool(self._released)

    async def send(self, records: Sequence[tuple[Lane, OutRecord]],
                   changes: Mapping[Lane, LaneChanges]) -> Awaitable[None]:
        self._open.extend(records)
        self._open_changes.extend(changes.values())
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def commit(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise TransactionAborted("injected commit failure")
        self.committed.extend(self._open)
        self.committed_changes.extend(self._open_changes)
        self.offsets.update(self._released)
        self._open, self._open_changes, self._released = [], [], {}

    async def abort(self) -> None:
        self._open, self._open_changes, self._released = [], [], {}

    async def rewind(self) -> DurableState:
        self.rewinds += 1
        self.rewind_requested = False
        self.epoch += 1
        self.restored_epoch = self.epoch
        state = DurableState()
        for ch in self.committed_changes:
            if ch.ids:
                state.ids.append((1.0, list(ch.ids)))
            state.seqs.update(ch.seqs)
            state.plugin.extend(ch.plugin)
        return state


def _pipeline(txn: MemoryTransactions) -> Pipeline:
    cfg = parse_config({"sources": [{"type": "kafka", "name": "kafka", "topics": ["in"]}],
                        "reorder": {"max_delay_ms": 0},
                        "routes": [{"name": "all", "topic": "out"}],
                        "delivery": {"guarantee": "exactly_once"}})
    return build_pipeline(cfg, CapturingSink(), Metrics(), transactions=txn)


def _events(first: int, n: int, job: str = "j") -> list[dict[str, Any]]:
    return [sagemaker_training_event(f"e-{i}", f"{job}{i % 3}", i) for i in range(first, first + n)]


async def _until(predicate: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.01)


def _ids(records: Sequence[tuple[Lane, OutRecord]]) -> list[str]:
    return sorted(dict(r.headers)["ce_id"].decode() for _, r in records if r.route == "all")


async def test_a_group_goes_out_with_its_lanes_changes_and_the_offsets_it_released() -> None:
    """Two lanes' batches: every record is sent with its lane, the changes carry each lane's ids and last
    sequences, and the commit takes the offsets both batches released."""
    txn = MemoryTransactions()
    p = _pipeline(txn)
    p.start()
    await _until(lambda: txn.rewinds == 1)  # the worker restores the durable state before anything
    await p.submit(txn.batch(0, _events(0, 4)))
    await p.submit(txn.batch(1, _events(10, 3, "k")))
    await _until(lambda: txn.offsets == {("in", 0): 4, ("in", 1): 13})
    assert _ids(txn.committed) == sorted(f"e-{i}" for i in [*range(4), *range(10, 13)])
    assert {lane.partition for lane, _ in txn.committed} == {0, 1}
    ids = sorted(i for ch in txn.committed_changes for _, i in ch.ids)
    assert ids == sorted(f"e-{i}" for i in [*range(4), *range(10, 13)])
    seqs = {k: v for ch in txn.committed_changes for k, v in ch.seqs.items()}
    assert {subject for _, subject in seqs} == {"training-job/j0", "training-job/j1", "training-job/j2",
                                                 "training-job/k0", "training-job/k1", "training-job/k2"}
    await p.close(grace=2)


async def test_a_failed_commit_rewinds_and_publishes_each_event_once() -> None:
    """A commit fails: nothing of that transaction is committed, the pipeline rewinds (its state from what was
    committed); the batches read again publish what was lost once, and what was committed before is not repeated."""
    txn = MemoryTransactions()
    p = _pipeline(txn)
    p.start()
    await _until(lambda: txn.rewinds == 1)
    first = _events(0, 5)
    await p.submit(txn.batch(0, first))
    await _until(lambda: txn.offsets.get(("in", 0)) == 5)
    second = _events(5, 5)
    txn.fail_commits = 1
    await p.submit(txn.batch(0, second))
    await _until(lambda: txn.rewinds == 2)
    assert _ids(txn.committed) == [f"e-{i}" for i in range(5)]
    await p.submit(txn.batch(0, first + second))  # the source read everything again from an earlier offset
    await _until(lambda: txn.offsets.get(("in", 0)) == 10)
    assert _ids(txn.committed) == sorted(f"e-{i}" for i in range(10))
    await p.close(grace=2)


async def test_a_batch_of_an_older_epoch_is_never_admitted() -> None:
    """A batch fetched before the last rewind (older epoch) is dropped before admission: nothing of it is sent
    and its position is not released."""
    txn = MemoryTransactions()
    p = _pipeline(txn)
    p.start()
    await _until(lambda: txn.rewinds == 1)
    await p.submit(txn.batch(0, _events(0, 3), epoch=txn.epoch - 1))
    await p.submit(txn.batch(1, _events(10, 1)))
    await _until(lambda: txn.offsets.get(("in", 1)) == 11)
    assert _ids(txn.committed) == ["e-10"] and ("in", 0) not in txn.offsets
    await p.close(grace=2)


def test_group_changes_keep_each_lane_apart_and_the_highest_sequence_per_subject() -> None:
    """Per lane: ids of records and of dead letters standing for events (none when dedup is off), the highest
    sequence per (source, subject), and the plug-in's entries in the lane of their record."""
    from bridge.pipeline.records import DeadRecord, Record, Tracker

    a, b = Lane("s", "t", 0, 1), Lane("s", "t", 1, 1)
    ta = Tracker(None, lambda t: None, "s", 0.0, None, a)
    tb = Tracker(None, lambda t: None, "s", 0.0, None, b)
    r1 = Record(b"", b"", "2", 1, ("src", "x1"), (), ta, subject="job/1")
    r2 = Record(b"", b"", "1", 1, ("src", "x2"), (), ta, subject="job/1")
    r3 = Record(b"", b"", "5", 2, ("src", "y1"), (), tb, subject="job/2")
    dead = DeadRecord(OutRecord("deadletter", "d", None, b"", []), tb, "late", ("src", "y0"))
    changes = group_changes([r1, r2, r3], [dead], [(r3, b"k", b"v")])
    assert changes[a].ids == [("src", "x1"), ("src", "x2")] and changes[a].seqs == {("src", "job/1"): "2"}
    assert changes[b].ids == [("src", "y1"), ("src", "y0")] and changes[b].plugin == [(b"k", b"v")]
    assert all(not ch.ids for ch in group_changes([r1, r3], [dead], ids=False).values())
