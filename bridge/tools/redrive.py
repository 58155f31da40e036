"""``bridge redrive``: dead letters re-run through the current config, after a fix to the config or the code.

A dead letter's value is its raw input (headers ``dlq_reason``, ``dlq_source``, ``dlq_position``): each one
selected is fed to the pipeline the config builds (trust, dedup, reorder, routes, ``changes_only``, the state
topic, the Kafka sink), as a message of its original source, in chunks; each chunk is flushed before the next.

- **Range**: the topic is read from the beginning (or the first record at/after ``--since``) to where it ended
  when the redrive started, never further: the dead letters the redrive writes itself are not re-read.
  ``--until`` and ``--reason REGEX`` (searched in ``dlq_reason``) narrow the selection.
- **Skipped** (and said why): a dead letter cut to fit the broker (``dlq_truncated``): its input is incomplete;
  one already redriven (remembered in the dedup store under its topic/partition@offset for
  ``state.remember_seconds``: a second run, or a run restarted after a crash, passes over what the first one
  finished); one written by a redrive under this very config and bridge version (``dlq_redrive_config``): it
  would fail the same way. ``--force`` redrives them anyway (truncated ones never).
- **Still failing**: the new dead letter keeps the original ``dlq_source``/``dlq_position``, gets the new
  reason, ``dlq_redrive_count`` (one more than the dead letter it came from), ``dlq_redrive_from`` (that dead
  letter's topic/partition@offset) and ``dlq_redrive_config``.
- **Idempotent through dedup**: redriven events are recorded in the dedup store like any other, so running it
  twice publishes nothing new, as long as the store remembers (``dedup.store: redis``; a memory store starts
  empty in each process: the command warns).
- ``--dry-run``: the same decisions against the same stores, read-only; nothing is published or recorded;
  one line per dead letter says what would happen.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import structlog
from aiokafka import ConsumerRecord

from bridge import __version__
from bridge.aio import completed
from bridge.config import BridgeConfig
from bridge.envelope import CloudEvent
from bridge.metrics import Metrics
from bridge.model import OutRecord, Probe, RawMessage, Sink, SourceBatch
from bridge.pipeline.admission import default_normalize
from bridge.pipeline.dedup import DedupKey, DedupStore
from bridge.sinks.encoding import DEADLETTER_ROUTE
from bridge.state.store import Entry, StateKey, StateStore, Write
from bridge.tools.terminal import Progress
from bridge.tools.topic_range import TopicRange, client_settings

log = structlog.get_logger("bridge.redrive")

LEDGER_SCOPE = "@redrive"
_DONE, _FAILED = b"redriven", b"failing"


@dataclass(slots=True)
class Options:
    topic: str
    since: float | None = None
    until: float | None = None
    reason: re.Pattern[str] | None = None
    dry_run: bool = False
    force: bool = False
    batch_size: int = 500
    bootstrap_servers: str | None = None


@dataclass(slots=True)
class Summary:
    read: int = 0
    not_selected: int = 0
    redriven: int = 0
    failing: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def fingerprint(cfg: BridgeConfig) -> str:
    """Identifies the config (secrets masked) and the bridge version a redrive ran with."""
    return hashlib.sha256(cfg.model_dump_json().encode() + b"\x00" + __version__.encode()).hexdigest()[:16]


def _position(rec: ConsumerRecord[bytes, bytes]) -> str:
    return f"{rec.topic}/{rec.partition}@{rec.offset}"


@dataclass(slots=True)
class _Input:
    """One dead letter being redriven."""

    position: str
    headers: dict[str, bytes]
    failed: str | None = None
    published: int = 0

    @property
    def count(self) -> int:
        raw = self.headers.get("dlq_redrive_count", b"0")
        return int(raw) if raw.isdigit() else 0


class _Tracking:
    """What the pipeline made of each input: its events (by normalize) and its new dead letters (by the sink)."""

    def __init__(self) -> None:
        self.inputs: dict[str, _Input] = {}
        self.events: dict[DedupKey, _Input] = {}

    def normalize(self, msg: RawMessage) -> tuple[list[CloudEvent], list[Exception]]:
        events, errors = default_normalize(msg)
        origin = self.inputs.get(msg.position)
        if origin is not None:
            for ev in events:
                self.events[(ev.source, ev.id)] = origin
        return events, errors

    def origin(self, rec: OutRecord) -> _Input | None:
        h = dict(rec.headers)
        found = self.inputs.get(h.get("dlq_position", b"").decode(errors="replace"))
        if found is None and "ce_id" in h:
            found = self.events.get((h.get("ce_source", b"").decode(), h["ce_id"].decode()))
        if found is None and rec.route != DEADLETTER_ROUTE:
            try:  # structured mode: the id is in the value
                ev = orjson.loads(rec.value)
                found = self.events.get((str(ev.get("source")), str(ev.get("id"))))
            except (orjson.JSONDecodeError, AttributeError):
                return None
        return found


class _RedriveSink:
    """The config's sink, seen through the redrive: dead letters get their redrive headers and mark their input
    as still failing; routed records are counted per input. ``dry_run``: nothing reaches the real sink."""

    def __init__(self, inner: Sink, tracking: _Tracking, config_id: str, dry_run: bool) -> None:
        self.inner = inner
        self.tracking = tracking
        self.config_id = config_id.encode()
        self.dry_run = dry_run

    @property
    def encoder(self) -> Any:
        return self.inner.encoder

    @property
    def ready(self) -> bool:
        return True if self.dry_run else self.inner.ready

    def probe(self) -> Probe | None:
        return None

    async def start(self) -> None:
        if not self.dry_run:
            await self.inner.start()

    async def stop(self) -> None:
        if not self.dry_run:
            await self.inner.stop()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        await (await self.enqueue(records))

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        out = [self._mark(r) for r in records]
        if self.dry_run:
            return completed()
        return await self.inner.enqueue(out)

    def _mark(self, rec: OutRecord) -> OutRecord:
        origin = self.tracking.origin(rec)
        if rec.route != DEADLETTER_ROUTE:
            if origin is not None:
                origin.published += 1
            return rec
        if origin is None:
            return rec
        origin.failed = dict(rec.headers).get("dlq_reason", b"").decode(errors="replace")
        kept = [(k, v) for k, v in rec.headers if k not in ("dlq_position", "dlq_redrive_count", "dlq_redrive_from",
                                                             "dlq_redrive_config")]
        kept += [
            ("dlq_position", origin.headers.get("dlq_position", b"")),
            ("dlq_redrive_count", str(origin.count + 1).encode()),
            ("dlq_redrive_from", origin.position.encode()),
            ("dlq_redrive_config", self.config_id),
        ]
        return rec._replace(headers=kept)


class _ReadOnlyDedup:
    """A dedup store for dry runs: reads the real one, remembers this run's records in memory only."""

    def __init__(self, inner: DedupStore) -> None:
        self.inner = inner
        self.local: set[DedupKey] = set()

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        found = await self.inner.seen(keys)
        return [f or k in self.local for k, f in zip(keys, found, strict=True)]

    async def record(self, keys: Sequence[DedupKey]) -> None:
        self.local.update(keys)

    async def close(self) -> None:
        await self.inner.close()


class _ReadOnlyStates:
    """A state store for dry runs: reads the real one, keeps this run's writes in memory only."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.local: dict[StateKey, Entry] = {}

    async def get(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        found = await self.inner.get(keys)
        return [self.local.get(k, f) for k, f in zip(keys, found, strict=True)]

    async def put(self, writes: Sequence[Write]) -> None:
        for key, seq, value in writes:
            prev = self.local.get(key)
            if prev is None or prev[0] <= seq:
                self.local[key] = (seq, value)

    async def close(self) -> None:
        await self.inner.close()


class Redrive:
    """One redrive run (see the module docstring)."""

    def __init__(self, cfg: BridgeConfig, options: Options, *, sink: Sink | None = None,
                 out: IO[str] | None = None, progress: Progress | None = None) -> None:
        from bridge.app import build_dedup_store, build_pipeline, build_state_store

        self.cfg = cfg.with_run_defaults()
        self.options = options
        self.out = out
        self.config_id = fingerprint(self.cfg)
        self.summary = Summary()
        self.tracking = _Tracking()
        self.metrics = Metrics()
        self.progress = progress or Progress(f"redrive {options.topic}", bar=True)
        assert self.cfg.sink is not None
        if sink is None:
            from bridge.sinks import registry

            sink = registry.build(self.cfg.sink)
        self.sink = _RedriveSink(sink, self.tracking, self.config_id, options.dry_run)
        dedup_store: DedupStore | None = build_dedup_store(self.cfg) if self.cfg.dedup.enabled else None
        self.ledger: StateStore = build_state_store(self.cfg, dedup_store)
        if options.dry_run:
            if dedup_store is not None:
                dedup_store = _ReadOnlyDedup(dedup_store)
            self.ledger = _ReadOnlyStates(self.ledger)
        self.pipeline = build_pipeline(self.cfg, self.sink, self.metrics, dedup_store,
                                       normalize=self.tracking.normalize, state_store=self.ledger)
        self.dedup_store = dedup_store

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.progress.close()
            self.out.write(text + "\n")
            self.out.flush()

    async def run(self) -> Summary:
        if self.cfg.dedup.store == "memory":
            log.warning("redrive.memory_dedup_store", detail="dedup.store is memory: this process does not know what "
                        "earlier redrives or the daemon delivered; a second redrive publishes the same events again "
                        "(use dedup.store: redis)")
        await self.sink.start()
        try:
            await self._prepare_state_topic()
            settings = client_settings(self.cfg.sink, self.options.bootstrap_servers)
            async with TopicRange(settings, self.options.topic, since=self.options.since) as reader:
                total = reader.total
                async for chunk in reader.chunks(self.options.batch_size):
                    await self._chunk(chunk)
                    s = self.summary
                    self.progress.update(reader.read, total, f"redriven {s.redriven}, still failing {s.failing}, "
                                         f"skipped {sum(s.skipped.values())}")
                self.progress.update(reader.read, total, final=True)
            self.progress.close()
        finally:
            await self.pipeline.close(grace=self.cfg.shutdown.grace_seconds)
            await self.sink.stop()
            if self.dedup_store is not None:
                await self.dedup_store.close()
            await self.ledger.close()
        self.summary.duplicates = int(sum(self.metrics.counts("bridge_duplicates_dropped", "source").values()))
        return self.summary

    async def _prepare_state_topic(self) -> None:
        if self.options.dry_run or self.cfg.state.topic is None or self.cfg.sink is None:
            return
        from bridge.state.topic import prepare_state_topic

        await prepare_state_topic(self.sink.inner, self.cfg.state)

    def _selected(self, rec: ConsumerRecord[bytes, bytes], headers: dict[str, bytes]) -> bool:
        o = self.options
        if o.until is not None and rec.timestamp / 1000.0 > o.until:
            return False
        return o.reason is None or bool(o.reason.search(headers.get("dlq_reason", b"").decode(errors="replace")))

    async def _chunk(self, chunk: list[ConsumerRecord[bytes, bytes]]) -> None:
        s = self.summary
        candidates: list[tuple[ConsumerRecord[bytes, bytes], dict[str, bytes]]] = []
        for rec in chunk:
            s.read += 1
            headers = {k: v for k, v in rec.headers}
            if not self._selected(rec, headers):
                s.not_selected += 1
            elif headers.get("dlq_truncated") == b"true":
                self._skipped(rec, "truncated", f"value cut to fit the broker ({headers.get('dlq_size', b'?').decode()}"
                              " bytes originally): its input cannot be redriven")
            elif not self.options.force and headers.get("dlq_redrive_config") == self.config_id.encode():
                self._skipped(rec, "failed under this config", "failed again under this very config and version")
            else:
                candidates.append((rec, headers))
        if not candidates:
            return
        keys = [self._ledger_key(rec) for rec, _ in candidates]
        done = [None] * len(keys) if self.options.force else await self.ledger.get(keys)
        batch: list[RawMessage] = []
        inputs: list[_Input] = []
        for (rec, headers), previous in zip(candidates, done, strict=True):
            if previous is not None:
                self._skipped(rec, "already redriven", f"already redriven ({previous[1].decode()})")
                continue
            item = _Input(_position(rec), headers)
            source = headers.get("dlq_source", b"").decode(errors="replace") or "redrive"
            self.tracking.inputs[item.position] = item
            inputs.append(item)
            batch.append(RawMessage(rec.value or b"", {}, source, item.position))
        if not batch:
            return
        await self.pipeline.submit(SourceBatch(batch, None, "redrive"))
        await self.pipeline.flush()
        writes: list[Write] = []
        for item in inputs:
            if item.failed is None:
                s.redriven += 1
                self._say(f"{item.position}  {'would redrive' if self.options.dry_run else 'redriven'}: "
                          f"{item.published} record(s) published")
            else:
                s.failing += 1
                self._say(f"{item.position}  {'would fail again' if self.options.dry_run else 'still failing'}: "
                          f"{item.failed}")
            writes.append(((LEDGER_SCOPE, self.options.topic, item.position), "",
                           _DONE if item.failed is None else _FAILED))
            del self.tracking.inputs[item.position]
        self.tracking.events.clear()
        if not self.options.dry_run:
            await self.ledger.put(writes)
        for route, n in self._published().items():
            s.published[route] = n

    def _published(self) -> dict[str, int]:
        return {route: int(n) for route, n in self.metrics.counts("bridge_events_out", "route").items() if n}

    def _ledger_key(self, rec: ConsumerRecord[bytes, bytes]) -> StateKey:
        return (LEDGER_SCOPE, self.options.topic, _position(rec))

    def _skipped(self, rec: ConsumerRecord[bytes, bytes], why: str, detail: str) -> None:
        self.summary.skip(why)
        self._say(f"{_position(rec)}  skipped: {detail}")


def report(summary: Summary, options: Options, elapsed: float) -> str:
    """The summary printed at the end."""
    s = summary
    skipped = sum(s.skipped.values())
    why = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items()))
    routes = " ".join(f"{k}={v}" for k, v in sorted(s.published.items())) or "none"
    lines = [
        f"redrive of {options.topic}{' (dry run: nothing published, nothing recorded)' if options.dry_run else ''}"
        f": {s.read} dead letters read in {elapsed:.1f} s",
        f"  redriven       {s.redriven:>7}   records {'that would be ' if options.dry_run else ''}published per "
        f"route: {routes}; duplicates dropped: {s.duplicates}",
        f"  still failing  {s.failing:>7}   {'would go' if options.dry_run else 'back'} on the dead-letter topic "
        "with the new reason and dlq_redrive_count",
        f"  skipped        {skipped:>7}   {why or '-'}",
    ]
    if s.not_selected:
        lines.append(f"  not selected   {s.not_selected:>7}   outside --until/--reason")
    return "\n".join(lines)


async def redrive(cfg: BridgeConfig, options: Options, *, out: IO[str] | None = None,
                  sink: Sink | None = None, progress: Progress | None = None) -> Summary:
    """Run one redrive; ``out`` gets one line per dead letter (what happened to it)."""
    started = time.monotonic()
    summary = await Redrive(cfg, options, sink=sink, out=out, progress=progress).run()
    log.info("redrive.finished", topic=options.topic, seconds=round(time.monotonic() - started, 1),
             redriven=summary.redriven, failing=summary.failing, skipped=sum(summary.skipped.values()))
    return summary
