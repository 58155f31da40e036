"""The one checkpointer of the sources: release only a contiguous prefix of acknowledged batches, per partition.

A source registers each batch's share of a partition with ``track(partition, position)`` in fetch order and gets
a ``Ticket``; ``done(tickets)`` marks them acknowledged. Per partition, the releasable position is the position
of the last ticket of the longest run of done tickets at the head: a batch acked out of order never releases a
position ahead of an earlier, unacknowledged one. ``take_ready()`` hands the positions that moved to the writer
(Kafka commit, Event Hubs checkpoint); a write that fails is put back with ``restore()`` unless a later position
superseded it meanwhile. ``revoke()`` forgets partitions that moved to another consumer: tickets of a revoked
partition are ignored when done later (their records go to the new owner: at least once).

Positions are opaque to the checkpointer: the Kafka source uses the next offset to read, the Event Hubs source
the last event of a batch. Marking a ticket done twice is harmless (the pipeline acks each batch once anyway).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
P = TypeVar("P")


@dataclass(slots=True, eq=False)
class _Lane(Generic[K, P]):
    """The tickets of one partition not yet released, in fetch order."""

    partition: K
    tickets: deque[Ticket[K, P]] = field(default_factory=deque)
    revoked: bool = False


@dataclass(slots=True, eq=False)
class Ticket(Generic[K, P]):
    """One batch's share of one partition: ``position`` is released once this and every earlier ticket is done."""

    position: P
    lane: _Lane[K, P]
    done: bool = False


class Checkpointer(Generic[K, P]):
    """Per partition: pending batches in fetch order and the highest contiguous acknowledged position."""

    def __init__(self) -> None:
        self._lanes: dict[K, _Lane[K, P]] = {}
        self._ready: dict[K, P] = {}

    def track(self, partition: K, position: P) -> Ticket[K, P]:
        """Register the next batch of ``partition`` (fetch order = release order), released at ``position``."""
        lane = self._lanes.get(partition)
        if lane is None:
            lane = self._lanes[partition] = _Lane(partition)
        ticket = Ticket(position, lane)
        lane.tickets.append(ticket)
        return ticket

    def done(self, tickets: Iterable[Ticket[K, P]]) -> bool:
        """Mark tickets acknowledged; True if some partition's releasable position moved."""
        moved = False
        for ticket in tickets:
            lane = ticket.lane
            if lane.revoked:
                continue
            ticket.done = True
            queue = lane.tickets
            released: Ticket[K, P] | None = None
            while queue and queue[0].done:
                released = queue.popleft()
            if released is not None:
                self._ready[lane.partition] = released.position
                moved = True
        return moved

    def take_ready(self) -> dict[K, P]:
        """The positions that moved since the last call, per partition (to be written by the source)."""
        ready, self._ready = self._ready, {}
        return ready

    def restore(self, positions: Mapping[K, P]) -> None:
        """Put back positions whose write failed, unless superseded by a later one or revoked meanwhile."""
        for partition, position in positions.items():
            if partition in self._lanes and partition not in self._ready:
                self._ready[partition] = position

    def revoke(self, partitions: Iterable[K]) -> dict[K, P]:
        """Forget ``partitions``; return the positions they had ready (not yet taken)."""
        ready: dict[K, P] = {}
        for partition in partitions:
            lane = self._lanes.pop(partition, None)
            if lane is not None:
                lane.revoked = True
            if partition in self._ready:
                ready[partition] = self._ready.pop(partition)
        return ready

    def pending(self, partition: K) -> int:
        """Tracked batches of ``partition`` not yet released (not done, or behind one that is not)."""
        lane = self._lanes.get(partition)
        return len(lane.tickets) if lane is not None else 0

    @property
    def partitions(self) -> list[K]:
        return list(self._lanes)

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)
