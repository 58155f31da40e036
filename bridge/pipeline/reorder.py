"""Per-subject reorder buffer (DESIGN.md section 3).

Each event waits at most ``max_delay`` seconds after its arrival. When an event's deadline passes, it is
released together with every held event of its subject whose sequence is not greater, in sequence order,
so output within a subject is always in sequence order. The buffer holds at most ``max_events``; above
that, the oldest arrivals are released early (never blocking, never growing). An event whose sequence is
lower than one already emitted for its subject is *late* and returned separately for the late policy.
Subjects are keyed by (source, subject), so equal subjects of different workspaces/accounts never mix.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict, deque

from bridge.pipeline.tracking import Item

SubjectKey = tuple[str, str]


class _Held:
    __slots__ = ("deadline", "emitted", "item", "key", "seq")

    def __init__(self, item: Item, key: SubjectKey, seq: str, deadline: float) -> None:
        self.item = item
        self.key = key
        self.seq = seq
        self.deadline = deadline
        self.emitted = False


class ReorderBuffer:
    """Holds events per subject and releases them in sequence order within ``max_delay``."""

    def __init__(self, max_delay: float = 2.0, max_events: int = 100_000, max_subjects: int = 1_000_000) -> None:
        if max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.max_delay = max_delay
        self.max_events = max_events
        self.max_subjects = max_subjects
        self._heaps: dict[SubjectKey, list[_Held]] = {}  # per subject, sorted by sequence (stable)
        self._fifo: deque[_Held] = deque()
        self._last: OrderedDict[SubjectKey, str] = OrderedDict()
        self.size = 0
        self.early_flushes = 0

    @property
    def subjects(self) -> int:
        return len(self._heaps)

    def push(self, items: list[Item], now: float) -> tuple[list[Item], list[Item]]:
        """Add events; return (released early under memory pressure, late events)."""
        late: list[Item] = []
        deadline = now + self.max_delay
        heaps, last, fifo = self._heaps, self._last, self._fifo
        for item in items:
            ev = item.event
            key = (ev.source, ev.subject)
            seq = ev.sequence
            prev = last.get(key)
            if prev is not None and seq < prev:
                late.append(item)
                continue
            held = _Held(item, key, seq, deadline)
            held_list = heaps.get(key)
            if held_list is None:
                heaps[key] = [held]
            elif seq >= held_list[-1].seq:  # the common case: arrivals mostly in order
                held_list.append(held)
            else:
                insort(held_list, held, key=_seq)
            fifo.append(held)
        self.size += len(items) - len(late)
        released: list[Item] = []
        while self.size > self.max_events:
            self.early_flushes += 1
            self._release_oldest(released)
        return released, late

    def expire(self, now: float) -> list[Item]:
        """Release every event whose deadline has passed (and what must precede it)."""
        out: list[Item] = []
        fifo = self._fifo
        while fifo:
            head = fifo[0]
            if head.emitted:
                fifo.popleft()
                continue
            if head.deadline > now:
                break
            fifo.popleft()
            self._release_through(head, out)
        return out

    def next_deadline(self) -> float | None:
        fifo = self._fifo
        while fifo and fifo[0].emitted:
            fifo.popleft()
        return fifo[0].deadline if fifo else None

    def drain(self) -> list[Item]:
        """Release everything (end of input or shutdown), each subject in sequence order."""
        out: list[Item] = []
        while self._fifo:
            head = self._fifo.popleft()
            if not head.emitted:
                self._release_through(head, out)
        return out

    def _release_oldest(self, out: list[Item]) -> None:
        fifo = self._fifo
        while fifo:
            head = fifo.popleft()
            if not head.emitted:
                self._release_through(head, out)
                return

    def _release_through(self, target: _Held, out: list[Item]) -> None:
        key = target.key
        held_list = self._heaps[key]
        bound = target.seq
        cut = bisect_right(held_list, bound, key=_seq)  # everything up to and including the target's sequence
        released = held_list[:cut]
        n = 0
        for held in released:
            if not held.emitted:
                held.emitted = True
                out.append(held.item)
                n += 1
        if cut == len(held_list):
            del self._heaps[key]
        else:
            del held_list[:cut]
        self.size -= n
        last = self._last
        last[key] = bound
        last.move_to_end(key)
        if len(last) > self.max_subjects:
            last.popitem(last=False)


def _seq(held: _Held) -> str:
    return held.seq
