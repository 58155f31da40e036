"""Admission: normalize, dedup, route and encode one source batch; the parsed events die here.

Per batch: every message is normalized (its errors become one dead letter per message); events from sources
outside the trust allow-lists (``trust.py``) are dead-lettered, never seen by dedup; the events' dedup keys
are classified in one store call (fresh, seen before, or a copy of an event still in flight); fresh events are
routed and encoded once with the sink's encoder into compact ``Record``s. An event that matches no route is
counted and becomes an empty record (no value, no route): it still passes the reorder buffer, so it counts for
its subject's order and lateness as the design's order (reorder, then route) says, and is settled when it
leaves. Any exception while normalizing, routing or encoding one message or event dead-letters that message or
event with the exception's type and text: no input stops the pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bridge.envelope import CloudEvent
from bridge.metrics import DEADLETTERED, MetricGroup, Metrics
from bridge.model import DeadLetter, Encoder, RawMessage, SourceBatch
from bridge.pipeline.dedup import FRESH, INFLIGHT, SEEN, DedupCode, Deduplicator
from bridge.pipeline.plugin import GroupPlugin
from bridge.pipeline.records import DeadRecord, Record, Tracker
from bridge.pipeline.router import Router
from bridge.pipeline.settlement import Settlement
from bridge.pipeline.trust import TrustPolicy, untrusted_body

log = structlog.get_logger("bridge.pipeline")

NormalizeFn = Callable[[RawMessage], tuple[list[CloudEvent], list[Exception]]]

_intern = sys.intern


def default_normalize(msg: RawMessage) -> tuple[list[CloudEvent], list[Exception]]:
    from bridge.normalize import normalize_all

    events, errors = normalize_all(msg)
    return events, list(errors)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class AdmissionMetrics(MetricGroup):
    """What admission writes."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.messages_in = m.counter("bridge_messages_in", "Raw messages received, per source", ["source"])
        self.events_in = m.counter("bridge_events_in", "Events normalized from received messages, per source",
                                   ["source"])
        self.duplicates = m.counter("bridge_duplicates_dropped", "Duplicate events dropped, per source", ["source"])
        self.unrouted = m.counter("bridge_events_unrouted", "Events that matched no route (dropped), per source",
                                  ["source"])
        self.untrusted = m.counter("bridge_untrusted",
                                   "Events outside the trust allow-lists (dead-lettered), per source", ["source"])
        self.deadlettered = m.counter_of(DEADLETTERED)


@dataclass(slots=True)
class Admitted:
    """What admission made of one batch."""

    records: list[Record] = field(default_factory=list)
    dead: list[DeadRecord] = field(default_factory=list)


class Admission:
    """The admission stage (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        encoder: Encoder,
        settlement: Settlement,
        metrics: Metrics,
        *,
        deadletter_topic: str,
        dedup: Deduplicator | None,
        normalize: NormalizeFn = default_normalize,
        keep_raw: bool = False,
        trust: TrustPolicy | None = None,
        plugin: GroupPlugin | None = None,
        keep_subject: bool = False,
        replay_keys: bool = False,
    ) -> None:
        self.router = router
        self.encoder = encoder
        self.settlement = settlement
        self.metrics = AdmissionMetrics(metrics)
        self.deadletter_topic = deadletter_topic
        self.dedup = dedup
        self._normalize = normalize
        self._keep_raw = keep_raw  # the raw body is kept only to dead-letter late events
        self.trust = trust
        self.plugin = plugin  # what a record keeps for the plug-in's decisions (bridge.state: changes_only routes)
        self.keep_subject = keep_subject  # exactly-once: the last sequence per subject is made durable
        self._replay_keys = replay_keys and dedup is not None  # exactly-once: dead letters keyed by input position

    def _dead(self, msg: RawMessage, reason: str, tracker: Tracker, kind: str, body: bytes | None = None,
              event: CloudEvent | None = None, key: tuple[str, str] | None = None) -> DeadRecord:
        dl = DeadLetter(self.deadletter_topic, reason, msg.body if body is None else body, msg.source, msg.position,
                        event)
        self.metrics.deadlettered.labels(kind).inc()
        if key is None and self._replay_keys:
            key = (msg.source, f"@{msg.position}#{kind}#{event.id if event is not None else ''}")
        return DeadRecord(self.encoder.dead_letter(dl), tracker, kind, key)

    async def _first_dead_letters(self, dead: list[DeadRecord], tracker: Tracker) -> tuple[list[DeadRecord], int]:
        """Exactly-once: dead letters carry a key made of their input position; one whose key was recorded (its
        input is read again after a rewind, its dead letter committed before its offset) is not written twice.
        Returns the dead letters to publish and how many wait for their copy in flight."""
        assert self.dedup is not None
        codes = await self.dedup.split([d.dkey for d in dead if d.dkey is not None])
        kept: list[DeadRecord] = []
        waiting = 0
        for d, code in zip(dead, codes, strict=True):
            if code == FRESH:
                kept.append(d)
            elif code == INFLIGHT and d.dkey is not None:
                self.settlement.wait_for_original(d.dkey, tracker)
                waiting += 1
        return kept, waiting

    async def admit(self, batch: SourceBatch, tracker: Tracker) -> Admitted:
        out = Admitted()
        normalize = self._normalize
        trust = self.trust
        events: list[CloudEvent] = []
        origins: list[RawMessage] = []
        untrusted = 0
        for msg in batch.messages:
            try:
                evs, errors = normalize(msg)
                if trust is not None and evs:
                    kept = []
                    for ev in evs:
                        reason = trust.check(ev, msg.source)
                        if reason is None:
                            kept.append(ev)
                        else:  # never routed, never seen by dedup
                            body = untrusted_body(msg, ev, len(evs))
                            out.dead.append(self._dead(msg, reason, tracker, "untrusted", body, ev))
                    untrusted += len(evs) - len(kept)
                    evs = kept
            except Exception as exc:  # a poison message: dead-lettered, never the end of the pipeline
                out.dead.append(self._dead(msg, f"normalize failed: {_describe(exc)}", tracker, "error"))
                continue
            if evs:
                events.extend(evs)
                origins.extend([msg] * len(evs))
            if errors:  # one dead letter per message, with every element's reason
                reason = "; ".join(getattr(err, "reason", None) or str(err) for err in errors)
                out.dead.append(self._dead(msg, reason, tracker, "invalid"))
        source = batch.source or (batch.messages[0].source if batch.messages else "")
        self.metrics.messages_in.labels(source).inc(len(batch.messages))
        self.metrics.events_in.labels(source).inc(len(events) + untrusted)
        if untrusted:
            self.metrics.untrusted.labels(source).inc(untrusted)
        waiting = 0
        if self._replay_keys and out.dead:
            out.dead, waiting = await self._first_dead_letters(out.dead, tracker)
        tracker.hold(len(out.dead) + waiting + len(events))
        if not events:
            return out
        keys = [(_intern(ev.source), ev.id) for ev in events]
        fresh: range | list[int] = range(len(events))
        if self.dedup is not None:
            codes = await self.dedup.split(keys)
            fresh = self._drop_duplicates(codes, keys, tracker, source)
        self.settlement.admitted(len(fresh))
        self._route_and_encode(fresh, events, origins, keys, tracker, source, out)
        return out

    def _drop_duplicates(self, codes: list[DedupCode], keys: list[tuple[str, str]], tracker: Tracker,
                         source: str) -> list[int]:
        fresh: list[int] = []
        seen = 0
        for i, code in enumerate(codes):
            if code == FRESH:
                fresh.append(i)
            elif code == SEEN:
                seen += 1
            elif code == INFLIGHT:  # released only when the copy in flight settles (else a crash loses it)
                self.settlement.wait_for_original(keys[i], tracker)
        ndup = len(codes) - len(fresh)
        if ndup:
            self.metrics.duplicates.labels(source).inc(ndup)
        self.settlement.seen_before(tracker, seen)
        return fresh

    def _route_and_encode(self, fresh: range | list[int], events: list[CloudEvent], origins: list[RawMessage],
                          keys: list[tuple[str, str]], tracker: Tracker, source: str, out: Admitted) -> None:
        match = self.router.match
        encode = self.encoder.encode
        keep_raw = self._keep_raw
        keep_subject = self.keep_subject
        plugin = self.plugin
        encode_all = plugin is not None and plugin.encode_unrouted
        unrouted = 0
        failed: list[tuple[str, str]] = []
        records = out.records
        for i in fresh:
            ev = events[i]
            key = keys[i]
            try:
                routes = match(ev)
                if routes:
                    value, meta = encode(ev)
                else:  # still ordered (it counts for its subject's lateness), then settled without a record
                    value, meta = encode(ev) if encode_all else (b"", b"")  # (the state topic takes it)
                    unrouted += 1
                kept = plugin.extract(ev, routes) if plugin is not None else None
            except Exception as exc:  # a poison event: dead-lettered (its unit becomes the dead letter's)
                msg = origins[i]
                reason = f"processing failed (event {ev.id!r}): {_describe(exc)}"
                log.error("pipeline.event_failed", id=ev.id, subject=ev.subject, error=reason, detail="dead-lettered")
                if self._replay_keys:  # exactly-once: the id stays recorded with the dead letter (never twice)
                    out.dead.append(self._dead(msg, reason, tracker, "error", key=key))
                    self.settlement.became_dead_letters(1)
                    continue
                out.dead.append(self._dead(msg, reason, tracker, "error"))
                failed.append(key)
                continue
            msg = origins[i]
            records.append(Record(value, meta, ev.sequence, hash((key[0], ev.subject)), key, routes, tracker,
                                  msg.body if keep_raw else None, kept, msg.position,
                                  ev.subject if keep_subject else None))
        if unrouted:
            self.metrics.unrouted.labels(source).inc(unrouted)
        if failed:
            self.settlement.forget(failed)
