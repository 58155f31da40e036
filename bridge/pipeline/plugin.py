"""The plug-in contract of the pipeline: what it calls of a component that decides, per publish group, which
routes each record goes to, and records what was published (``bridge.state`` implements it: ``changes_only``
routes and the state topic).

The pipeline calls a ``GroupPlugin`` at five points and nowhere else:

1. ``start(sink)``: once, before the first publish (the state topic is created or checked there);
2. ``extract(event, routes)`` at admission: what a record keeps of its parsed event for the decisions
   (``Record.state``), or ``None``; ``encode_unrouted`` says whether events no route wants are encoded anyway;
3. ``plan(box)`` just before a group is handed to the sink, in sequence order: it may rewrite ``Record.routes``
   and returns a ``GroupPlan`` (or ``None``: nothing to remember). Plans of groups still in flight are seen by
   the next ``plan``, so with several groups in flight a decision never repeats one that is on its way;
4. ``GroupPlan.settle()`` after the sink confirmed the group (step 1 of the after-confirm order,
   ``bridge.pipeline.settlement``), or ``GroupPlan.discard()`` when the group will not be published as planned;
5. ``close()`` at shutdown. ``store`` is the health of the plug-in's store for readiness (``None``: none).

With exactly-once delivery (``bridge.pipeline.transactions``) what a plan records is durable state written in the
group's transactions: ``GroupPlan.changes()`` gives it as opaque (key, value) entries, each with the record that
caused it; after a rewind the plug-in is ``reset()`` and ``restore``s the entries read back (later entries of a
key win), so it decides as before the crash.

A plug-in sees the pipeline's records through this module only (``Record``, ``DeadRecord``, ``Route``): it
imports nothing else of ``bridge.pipeline``, and the pipeline imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from bridge.envelope import CloudEvent
from bridge.model import Sink
from bridge.pipeline.records import DeadRecord, Record
from bridge.pipeline.router import Route
from bridge.storeguard import StoreHealth

__all__ = ["DeadRecord", "GroupPlan", "GroupPlugin", "Record", "Route", "StateValues"]

StateValues = tuple[str | bytes, ...]
"""What ``extract`` keeps of an event in ``Record.state``."""


class GroupPlan(Protocol):
    """What a plug-in decided for one publish group, handed back to it once the group's fate is known."""

    async def settle(self) -> None:
        """The sink confirmed the group: record what was published (``Record.routes`` as published: a record
        isolated as unpublishable lost the route it could not be published on)."""
        ...

    def discard(self) -> None:
        """The group will not be published as planned (an aborted transaction): forget the plan."""
        ...

    def changes(self) -> Sequence[tuple[Record, bytes, bytes]]:
        """What ``settle`` will record, as durable (key, value) entries, each with the record that caused it."""
        ...


class GroupPlugin(Protocol):
    """The contract the pipeline calls (see the module docstring)."""

    @property
    def encode_unrouted(self) -> bool: ...

    @property
    def store(self) -> StoreHealth | None: ...

    async def start(self, sink: Sink) -> None: ...

    def extract(self, event: CloudEvent, routes: tuple[Route, ...]) -> StateValues | None: ...

    async def plan(self, box: Sequence[Record | DeadRecord]) -> GroupPlan | None: ...

    def reset(self) -> None:
        """Forget every decision and plan held (a rewind: the durable state is restored next)."""
        ...

    def restore(self, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """Take back durable entries ``GroupPlan.changes`` gave, in the order they were written."""
        ...

    async def close(self) -> None: ...
