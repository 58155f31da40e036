"""What the pipeline holds between admission and settlement: compact records, not parsed events.

A ``Record`` is one admitted event after routing and encoding: the sink's encoded bytes (``value``, ``meta``),
the few attributes ordering and settlement need (sequence, subject key, dedup key), the routes it goes to, and
the tracker of its source batch. The parsed event is gone once a ``Record`` exists. ``DeadRecord`` is a
dead letter already encoded for the sink. ``Tracker`` counts the outstanding units of one source batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bridge import jsonutil
from bridge.model import AckFn, Lane, OutRecord, Release
from bridge.pipeline.router import Route

RECORD_OVERHEAD: Final = 420
"""Bytes a held ``Record`` costs beyond its value and meta (object, sequence, keys, dedup bookkeeping);
measured by ``bench/memory.py`` and used for the memory budget's accounting."""
STATE_OVERHEAD: Final = 120
"""Bytes ``Record.state`` costs beyond its strings' lengths (``sys.getsizeof``: a 1- or 2-tuple 48/56, the subject
str 49 and a value bytes 33 plus their lengths; 97 to 138 in all for the usual shapes)."""


class Tracker:
    """Outstanding-unit counter of one source batch; fires ``on_done(tracker)`` once when fully released.

    A unit is an event or a dead letter. Every unit is released exactly once: after the sink confirmed it, or
    when it was deliberately dropped (duplicate, unrouted, late-dropped). Once the batch is sealed (all of it
    admitted) and nothing is outstanding, ``on_done`` runs, exactly once. ``batch_release`` (or else ``ack``) is how the
    batch gives its position back (``bridge.pipeline.settlement``, steps 4 and 5).
    """

    __slots__ = ("_on_done", "ack", "arrival", "batch_release", "done", "lane", "pending", "sealed", "source")

    def __init__(
        self, ack: AckFn | None, on_done: Callable[[Tracker], None], source: str = "", arrival: float = 0.0,
        release: Release | None = None, lane: Lane | None = None,
    ) -> None:
        self.ack = ack
        self.batch_release = release
        self.lane = lane  # the batch's input partition (exactly-once delivery), else None
        self.source = source
        self.arrival = arrival
        self.pending = 0
        self.sealed = False
        self.done = False
        self._on_done = on_done

    def hold(self, n: int = 1) -> None:
        self.pending += n

    def release(self, n: int = 1) -> None:
        self.pending -= n
        if self.pending < 0:
            raise RuntimeError("tracker released more units than it held")
        self._maybe_done()

    def seal(self) -> None:
        self.sealed = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.sealed and self.pending == 0 and not self.done:
            self.done = True
            self._on_done(self)


class Record:
    """An admitted, routed and encoded event (implements ``bridge.model.HeldEvent``)."""

    __slots__ = ("deadline", "dkey", "emitted", "late", "meta", "nbytes", "position", "raw", "routes", "seq", "skey",
                 "state", "subject", "tracker", "value")

    def __init__(
        self,
        value: bytes,
        meta: bytes,
        seq: str,
        skey: int,
        dkey: tuple[str, str],
        routes: tuple[Route, ...],
        tracker: Tracker,
        raw: bytes | None = None,
        state: tuple[str | bytes, ...] | None = None,
        position: str = "",
        subject: str | None = None,
    ) -> None:
        self.value = value
        self.meta = meta
        self.seq = seq
        self.skey = skey  # hash of (source, subject): the reorder buffer's per-subject key
        self.dkey = dkey  # (source, id): the dedup key, also the event's id and source for its headers
        self.routes = routes
        self.tracker = tracker
        self.raw = raw  # the raw input, kept only when late events are dead-lettered
        self.state = state  # (subject, state values): kept for the plug-in (bridge.pipeline.plugin)
        self.position = position  # of its input message (the source's string, shared): for a dead letter
        self.subject = subject  # kept only where the last sequence per subject is made durable (exactly-once)
        self.late = False
        self.emitted = False
        self.deadline = 0.0
        # what holding this record costs, for the memory budget: computed once (the reorder buffer and the outbox
        # both count it), and unchanged when settlement drops the bytes of a delivered record
        n = len(value) + len(meta) + len(position) + RECORD_OVERHEAD + (len(raw) if raw is not None else 0)
        if state is not None:
            n += STATE_OVERHEAD + sum(len(x) for x in state)
        if subject is not None:
            n += 49 + len(subject)
        self.nbytes = n


class DeadRecord:
    """A dead letter, encoded; ``dkey`` is set when it stands for an admitted event (its id gets recorded)."""

    __slots__ = ("dkey", "kind", "out", "tracker")

    def __init__(self, out: OutRecord, tracker: Tracker, kind: str, dkey: tuple[str, str] | None = None) -> None:
        self.out = out
        self.tracker = tracker
        self.kind = kind
        self.dkey = dkey

    @property
    def nbytes(self) -> int:
        return len(self.out.value) + sum(len(k) + len(v) for k, v in self.out.headers) + RECORD_OVERHEAD


def input_ids(body: bytes) -> str | None:
    """The event id(s) an input that could not become events still names (the ``id`` of an object, of an array's
    objects, comma separated), for a dead letter's log line; ``None`` when it names none or is not JSON."""
    try:
        doc = jsonutil.loads(body)
    except (ValueError, TypeError):
        return None
    items = doc if type(doc) is list else [doc]
    ids = [str(x["id"]) for x in items if type(x) is dict and type(x.get("id")) in (str, int) and x["id"] != ""]
    return ",".join(ids) if ids else None
