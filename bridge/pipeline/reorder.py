"""Per-subject reorder buffer (docs/design.md, "Pipeline semantics").

Each record waits at most ``max_delay`` seconds after its arrival. When a record's deadline passes, it is
released together with every held record of its subject whose sequence is not greater, in sequence order,
so output within a subject is always in sequence order. The buffer holds at most ``max_events`` records and
``max_bytes`` bytes (the records' own accounting, ``Record.nbytes``); above either, the oldest arrivals are
released early (never blocking, never growing). A record whose sequence is lower than one already emitted for
its subject is *late* and returned separately for the late policy. Subjects are keyed by a hash of
(source, subject), so equal subjects of different workspaces/accounts never mix.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict, deque
from collections.abc import Iterable

from bridge.pipeline.records import Record


def _seq(rec: Record) -> str:
    return rec.seq


class ReorderBuffer:
    """Holds records per subject and releases them in sequence order within ``max_delay``."""

    def __init__(
        self,
        max_delay: float = 2.0,
        max_events: int = 100_000,
        max_subjects: int = 1_000_000,
        max_bytes: int | None = None,
    ) -> None:
        if max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.max_delay = max_delay
        self.max_events = max_events
        self.max_subjects = max_subjects
        self.max_bytes = max_bytes
        self._lists: dict[int, list[Record]] = {}  # per subject, sorted by sequence (stable)
        self._fifo: deque[Record] = deque()
        self._last: OrderedDict[int, str] = OrderedDict()  # last emitted sequence per subject (late detection)
        self.size = 0
        self.bytes = 0
        self.early_flushes = 0

    @property
    def subjects(self) -> int:
        return len(self._lists)

    def reset(self) -> None:
        """Hold nothing, remember nothing emitted (a rewind of exactly-once delivery: ``restore`` follows)."""
        for rec in self._fifo:
            rec.emitted = True  # a record still referenced elsewhere is done with this buffer
        self._lists.clear()
        self._fifo.clear()
        self._last.clear()
        self.size = self.bytes = 0

    def restore(self, last: Iterable[tuple[int, str]]) -> None:
        """The last sequence emitted per subject key, read back from the durable state (lateness as before)."""
        mine = self._last
        for key, seq in last:
            prev = mine.get(key)
            if prev is None or seq > prev:
                mine[key] = seq
        while len(mine) > self.max_subjects:
            mine.popitem(last=False)

    def push(self, records: list[Record], now: float) -> tuple[list[Record], list[Record]]:
        """Add records; return (released early under pressure, late records)."""
        late: list[Record] = []
        deadline = now + self.max_delay
        lists, last, fifo = self._lists, self._last, self._fifo
        added = 0
        for rec in records:
            key = rec.skey
            seq = rec.seq
            prev = last.get(key)
            if prev is not None and seq < prev:
                late.append(rec)
                continue
            rec.deadline = deadline
            held = lists.get(key)
            if held is None:
                lists[key] = [rec]
            elif seq >= held[-1].seq:  # the common case: arrivals mostly in order
                held.append(rec)
            else:
                insort(held, rec, key=_seq)
            fifo.append(rec)
            added += rec.nbytes
        self.size += len(records) - len(late)
        self.bytes += added
        released: list[Record] = []
        max_bytes = self.max_bytes
        while self.size > self.max_events or (max_bytes is not None and self.bytes > max_bytes and self.size):
            self.early_flushes += 1
            self._release_oldest(released)
        return released, late

    def expire(self, now: float) -> list[Record]:
        """Release every record whose deadline has passed (and what must precede it)."""
        out: list[Record] = []
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

    def drain(self) -> list[Record]:
        """Release everything (end of input or shutdown), each subject in sequence order."""
        out: list[Record] = []
        while self._fifo:
            head = self._fifo.popleft()
            if not head.emitted:
                self._release_through(head, out)
        return out

    def _release_oldest(self, out: list[Record]) -> None:
        fifo = self._fifo
        while fifo:
            head = fifo.popleft()
            if not head.emitted:
                self._release_through(head, out)
                return

    def _release_through(self, target: Record, out: list[Record]) -> None:
        key = target.skey
        held = self._lists[key]
        bound = target.seq
        cut = bisect_right(held, bound, key=_seq)  # everything up to and including the target's sequence
        n = 0
        freed = 0
        for rec in held[:cut]:
            if not rec.emitted:
                rec.emitted = True
                out.append(rec)
                n += 1
                freed += rec.nbytes
        if cut == len(held):
            del self._lists[key]
        else:
            del held[:cut]
        self.size -= n
        self.bytes -= freed
        last = self._last
        last[key] = bound
        last.move_to_end(key)
        if len(last) > self.max_subjects:
            last.popitem(last=False)
