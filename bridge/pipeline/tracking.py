"""Delivery tracking: which source batch each in-flight event belongs to, and when a batch may be acked.

A ``Tracker`` counts the outstanding units (events or dead letters) of one source batch. Every unit is
released exactly once: after the sink confirmed it, or when it was deliberately dropped (duplicate,
filtered out, late-dropped). When the batch is sealed (all its messages normalized) and nothing is
outstanding, its ack callback is scheduled exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.envelope import CloudEvent
from bridge.model import AckFn


class Tracker:
    """Outstanding-unit counter of one source batch; fires ``on_done(ack)`` once when fully released."""

    __slots__ = ("_on_done", "ack", "done", "pending", "sealed", "source")

    def __init__(self, ack: AckFn | None, on_done: Callable[[Tracker], None], source: str = "") -> None:
        self.ack = ack
        self.source = source
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


@dataclass(slots=True, eq=False)
class Item:
    """An event travelling through the pipeline with the tracker of the batch it came from."""

    event: CloudEvent
    tracker: Tracker
    raw: bytes = b""
    position: str = ""
    source: str = ""
    arrival: float = 0.0
    routes: list[str] = field(default_factory=list)
