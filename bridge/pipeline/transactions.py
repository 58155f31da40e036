"""Exactly-once delivery, the pipeline's side: the contract it calls, and what it makes durable.

With ``delivery.guarantee: exactly_once`` (Kafka sources into the Kafka sink) the outputs of a publish group, the
durable state they change and the source offsets they release commit together, in Kafka transactions, or not at
all (docs/design.md, "Exactly once"). The pipeline does not know Kafka: it calls a ``Transactions`` object (the
implementation is ``bridge.eos``) at three points:

1. ``send(records, changes)`` for each group: the group's records, each with the lane (input partition) of its
   event, and per lane what the group changes of the durable state (``LaneChanges``); the transactions of those
   lanes begin on their first record;
2. ``commit()`` when the transaction is due (``max_records`` records or ``max_seconds`` since it began, or
   nothing more to send): the offsets the settled groups released are sent with it, every lane commits;
3. ``rewind()`` after an abort (a failed commit, a fenced producer, a rebalance): the sources go back to their
   committed offsets and the durable state of every lane is read back (``DurableState``) to restart from.

The durable state is what decides outputs beyond one transaction: the ids recorded by dedup (with the time they
were recorded: they expire with the dedup window), the last sequence emitted per (source, subject) (lateness),
and what the plug-in records (``GroupPlan.changes``: the last states of ``changes_only`` routes and of the state
topic). Restored, it makes a restarted bridge decide as the crashed one would have: no store outside Kafka
decides anything in this mode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.model import Lane, OutRecord
from bridge.pipeline.dedup import DedupKey
from bridge.pipeline.records import DeadRecord, Record

SubjectKey = tuple[str, str]
"""(source, subject)."""


class TransactionAborted(RuntimeError):
    """A transaction could not commit and was aborted: the pipeline rewinds (``Transactions.rewind``)."""


@dataclass(slots=True)
class LaneChanges:
    """What one group changes of one lane's durable state."""

    ids: list[DedupKey] = field(default_factory=list)
    seqs: dict[SubjectKey, str] = field(default_factory=dict)
    plugin: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ids or self.seqs or self.plugin)


@dataclass(slots=True)
class DurableState:
    """The durable state of the lanes a bridge owns, as read back after a rewind."""

    ids: list[tuple[float, list[DedupKey]]] = field(default_factory=list)
    """(age in seconds when read, ids recorded then), oldest first."""
    seqs: dict[SubjectKey, str] = field(default_factory=dict)
    plugin: list[tuple[bytes, bytes]] = field(default_factory=list)


class Transactions(Protocol):
    """The contract the pipeline calls (see the module docstring)."""

    max_records: int
    max_seconds: float

    def current(self, lane: Lane | None) -> bool:
        """Whether a batch of ``lane`` may be admitted: its epoch is the source's current, restored one."""
        ...

    @property
    def rewind_needed(self) -> bool:
        """An abort happened outside the pipeline's own calls (a rebalance, a fenced producer): rewind."""
        ...

    def on_rewind_needed(self, wake: object) -> None:
        """Call ``wake()`` (a no-argument callable) whenever ``rewind_needed`` becomes true."""
        ...

    def positions_pending(self) -> bool:
        """The sources hold released offsets not yet committed (a commit with no records is due)."""
        ...

    async def send(self, records: Sequence[tuple[Lane, OutRecord]],
                   changes: Mapping[Lane, LaneChanges]) -> Awaitable[None]:
        """Hand the records and the changelog entries to the lanes' producers (in transactions, begun where need
        be); the awaitable completes once the broker has them all (not yet committed)."""
        ...

    async def commit(self) -> None:
        """Send the released offsets and commit every open transaction; raises ``TransactionAborted`` (after
        aborting) when that fails."""
        ...

    async def abort(self) -> None:
        """Abort every open transaction (nothing of them becomes visible to ``read_committed`` readers)."""
        ...

    async def rewind(self) -> DurableState:
        """Seek the sources back to their committed offsets (their epochs move on) and read the durable state of
        every lane they own."""
        ...


def group_changes(records: Iterable[Record], dead: Iterable[DeadRecord],
                  plugin: Iterable[tuple[Record, bytes, bytes]] = (), *, ids: bool = True) -> dict[Lane, LaneChanges]:
    """Per lane, what a group changes of the durable state: every settled event's id (dead letters standing for
    events too; none when ``ids`` is false: dedup is off), the highest sequence per subject (records that kept
    their subject), and the plug-in's entries (each in the lane of its record)."""
    out: defaultdict[Lane, LaneChanges] = defaultdict(LaneChanges)
    for r in records:
        lane = r.tracker.lane
        if lane is None:
            continue
        ch = out[lane]
        if ids:
            ch.ids.append(r.dkey)
        if r.subject is not None:
            key = (r.dkey[0], r.subject)
            prev = ch.seqs.get(key)
            if prev is None or r.seq > prev:
                ch.seqs[key] = r.seq
    for d in dead:
        lane = d.tracker.lane
        if lane is not None and d.dkey is not None and ids:
            out[lane].ids.append(d.dkey)
    for rec, entry_key, entry_value in plugin:
        lane = rec.tracker.lane
        if lane is not None:
            out[lane].plugin.append((entry_key, entry_value))
    return dict(out)
