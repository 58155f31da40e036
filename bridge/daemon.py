"""``bridge run``: sources -> pipeline -> sink, wired from the config, until SIGTERM/SIGINT.

The daemon wires the parts (sources and the sink from their registries, the pipeline from ``bridge.app``,
readiness and the HTTP endpoints from ``bridge.readiness``), pumps the sources and processes their batches, and
shuts down. Every source runs in its own task, reconnecting with backoff, and feeds one bounded queue; one loop
drains the queue into the pipeline and releases reorder-buffer deadlines. SIGTERM/SIGINT stop pulling, drain the
queue, the reorder buffer and the in-flight publishes, release (commit) source positions, and exit 0, all within
``shutdown.grace_seconds`` whatever is blocked (a hung broker or dedup store): what is not delivered by then stays
unacknowledged upstream and is redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import TYPE_CHECKING, Any

import structlog

from bridge.aio import reraise_if_cancelled
from bridge.app import build_dedup_store, build_pipeline, memory_plan
from bridge.config import BridgeConfig
from bridge.health import BrokerProbes, ShutdownWatchdog, StallWatch
from bridge.limits import BudgetMetrics, MemoryBudget, MiB, Plan
from bridge.logs import configure, scrub
from bridge.metrics import DEADLETTER_KINDS, Metrics
from bridge.model import Sink, Source, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.readiness import HttpServer, Readiness
from bridge.retry import CONNECT, Retries, pause
from bridge.sinks import registry as sinks
from bridge.sources import registry
from bridge.sources.registry import SourceResources, SourceSettings

if TYPE_CHECKING:
    from bridge.eos import ExactlyOnce
    from bridge.state.store import StateStore

log = structlog.get_logger("bridge.daemon")


def build_source(cfg: SourceSettings, budget: MemoryBudget | None = None, prefetch_bytes: int | None = None) -> Source:
    """The source of one ``sources[]`` entry (by its connector, ``bridge.sources.registry``); ``budget`` and
    ``prefetch_bytes`` bound what it fetches."""
    return registry.build(cfg, SourceResources(budget, prefetch_bytes))


def build_sink(cfg: BridgeConfig) -> Sink:
    """The sink of the ``sink`` entry (by its connector, ``bridge.sinks.registry``)."""
    assert cfg.sink is not None
    return sinks.build(cfg.sink)


class Daemon:
    """The running bridge. ``run()`` returns the process exit code."""

    def __init__(self, cfg: BridgeConfig, sources: list[Source] | None = None, sink: Sink | None = None,
                 watchdog: ShutdownWatchdog | None = None, state_store: StateStore | None = None) -> None:
        """``sources``, ``sink`` and ``state_store`` replace the ones the config would build (tests, embedding)."""
        self.cfg = cfg
        self.metrics = Metrics()
        self.plan: Plan = memory_plan(cfg)
        budget_metrics = BudgetMetrics(self.metrics)
        self.budget = MemoryBudget(self.plan.held_bytes, on_pause=budget_metrics.source_pauses.inc)
        budget_metrics.memory_budget.set(self.plan.held_bytes)
        budget_metrics.memory_limit.set(self.plan.memory_mb * MiB)
        self.sink = sink if sink is not None else build_sink(cfg)
        share = self.plan.source_bytes // max(1, len(cfg.sources))
        self.eos: ExactlyOnce | None = None
        if cfg.delivery.guarantee == "exactly_once":
            from bridge.eos import build_exactly_once

            txn_sources, self.eos = build_exactly_once(cfg, self.sink, self.metrics, self.budget, share)
            sources = sources if sources is not None else list(txn_sources)
            if cfg.dedup.store == "redis":
                log.warning("daemon.dedup_store_unused", store="redis",
                            detail="exactly_once keeps dedup ids and last states in its changelog topic, not Redis")
        if sources is None:
            sources = [build_source(s, self.budget, share) for s in cfg.sources]
        self.sources = sources
        self.store = build_dedup_store(cfg, self.plan) if cfg.dedup.enabled and self.eos is None else None
        self.pipeline: Pipeline = build_pipeline(cfg, self.sink, self.metrics, self.store, self.budget,
                                                 state_store=state_store, transactions=self.eos)
        self.queue: asyncio.Queue[SourceBatch | None] = asyncio.Queue(maxsize=8)
        self.stopping = asyncio.Event()
        self._admitting = False  # the processor is inside pipeline.submit (e.g. waiting for the dedup store)
        r = cfg.readiness
        self.probes = BrokerProbes(r.probe_interval_seconds, r.probe_timeout_seconds)
        self.readiness = Readiness(self.sink, self.sources, self.pipeline, self.metrics, pending=self.pending,
                                   stopping=self.stopping, stall=StallWatch(r.stall_seconds), probes=self.probes)
        self.http = HttpServer(self.readiness, self.metrics, cfg.http.host, cfg.http.port)
        self.metrics.prime(source=[s.name for s in self.sources], route=[r.name for r in cfg.routes],
                           kind=DEADLETTER_KINDS, policy=[cfg.reorder.late_policy] if cfg.reorder.enabled else [],
                           outcome=["committed", "aborted"] if self.eos is not None else [])
        self._watchdog = watchdog

    @property
    def http_port(self) -> int | None:
        """The port /healthz, /readyz and /metrics listen on, once started."""
        return self.http.port

    def pending(self) -> bool:
        """Whether the pipeline has work it has not finished: events in flight, batches queued or being admitted."""
        return self.pipeline.inflight > 0 or self.queue.qsize() > 0 or self._admitting

    # -- connections -----------------------------------------------------------------------------
    async def _with_backoff(self, what: str, fn: Any, retries: Retries | None = None) -> bool:
        """Call ``fn`` until it succeeds (True) or the daemon stops (False), waiting as ``retry.CONNECT`` says."""
        retries = retries if retries is not None else CONNECT.retries()
        while not self.stopping.is_set():
            try:
                await fn()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = retries.failed()
                log.warning("daemon.connect_failed", target=what, retry_in=delay,
                            error=scrub(f"{type(exc).__name__}: {exc}"))
                await pause(delay, self.stopping)
        return False

    async def _pump(self, src: Source) -> None:
        """Read one source forever, reconnecting with backoff when it fails (the failures count across
        reconnects until a batch arrives, so a source that fails right after connecting backs off too)."""
        retries = CONNECT.retries()
        while not self.stopping.is_set():
            if not await self._with_backoff(f"source {src.name}", src.start, retries):
                return
            log.info("daemon.source_started", source=src.name)
            try:
                async for batch in src.batches():
                    retries.succeeded()
                    await self.queue.put(batch)
                    if self.stopping.is_set():
                        break
                if self.stopping.is_set():
                    return
                delay = retries.failed()
                log.warning("daemon.source_ended", source=src.name, retry_in=delay)
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc)
                delay = retries.failed()
                log.error("daemon.source_failed", source=src.name, retry_in=delay,
                          error=scrub(f"{type(exc).__name__}: {exc}"))
                with contextlib.suppress(Exception):
                    await src.stop()
            await pause(delay, self.stopping)

    async def _process(self) -> None:
        pipeline = self.pipeline
        loop = asyncio.get_running_loop()
        while True:
            deadline = pipeline.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                batch = await asyncio.wait_for(self.queue.get(), timeout) if timeout is not None \
                    else await self.queue.get()
            except TimeoutError:
                pipeline.tick()
                continue
            if batch is None:  # shutdown sentinel: everything queued before it is processed
                return
            self._admitting = True
            try:
                await pipeline.submit(batch)
            finally:
                self._admitting = False
            pipeline.tick()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if not self.cfg.trust.configured:
            log.warning("daemon.trust_not_configured",
                        detail="events are accepted from every workspace, account and source",
                        hint="set trust.azure_workspaces / aws_accounts / aws_regions / event_sources")
        await self.http.start()
        watch = asyncio.create_task(self.readiness.watch(), name="readiness")
        probes = asyncio.create_task(self.probes.run(self.readiness.probe_targets, self.stopping), name="probes")
        dedup = self.pipeline.dedup
        check = asyncio.create_task(dedup.check() if dedup is not None else asyncio.sleep(0), name="dedup-check")
        if not await self._with_backoff("sink", self.sink.start):  # stopped while still connecting
            check.cancel()
            await self._close_connections(loop.time() + self.cfg.shutdown.grace_seconds, watch, probes)
            log.info("daemon.stopped", exit_code=0)
            return 0
        await _bounded(self.pipeline.prepare(), min(30.0, self.cfg.shutdown.grace_seconds), "pipeline preparation")
        if self.eos is not None and not await self._with_backoff("changelog topics", self.eos.start):
            await self._close_connections(loop.time() + self.cfg.shutdown.grace_seconds, watch, probes)
            log.info("daemon.stopped", exit_code=0)
            return 0
        worker = self.pipeline.start()
        pumps = [asyncio.create_task(self._pump(s), name=f"source-{s.name}") for s in self.sources]
        processor = asyncio.create_task(self._process(), name="pipeline")
        gc_task = asyncio.create_task(_gc_loop(), name="gc")
        log.info("daemon.running", sources=[s.name for s in self.sources],
                 routes=[r.name for r in self.cfg.routes])
        log.info("daemon.memory_budget", **self.plan.describe())
        stop_wait = asyncio.create_task(self.stopping.wait())
        # the processor and the delivery worker run until stop: either ending first is a crash, never a stall
        await asyncio.wait([stop_wait, processor, worker], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        for task, what in ((processor, "pipeline"), (worker, "delivery worker")):
            if task.done() and not self.stopping.is_set():
                exc = None if task.cancelled() else task.exception()
                error = scrub(f"{type(exc).__name__}: {exc}") if exc is not None else "ended unexpectedly"
                log.error("daemon.task_failed", task=what, error=error, detail="stopping")
                exit_code = 1
                self.stopping.set()
        stop_wait.cancel()
        gc_task.cancel()
        check.cancel()
        grace = self.cfg.shutdown.grace_seconds
        deadline = loop.time() + grace - min(1.0, grace * 0.15)  # margin for the interpreter's own exit
        drain_until = deadline - min(4.0, grace * 0.25)  # the rest closes connections (commits included)
        log.info("daemon.shutting_down", grace_seconds=grace)
        for t in pumps:
            t.cancel()
        await _bounded(asyncio.gather(*pumps, return_exceptions=True), drain_until - loop.time(), "source pumps")
        if not processor.done():
            # Batches already pulled are processed, not lost, unless admission is blocked (e.g. on the dedup
            # store) past the drain budget: then what it holds stays unacknowledged upstream. After a crash the
            # processor may wait for a delivery worker that is gone: cancelled at once.
            drained = not exit_code and (
                await _bounded(self.queue.put(None), drain_until - loop.time(), "pipeline queue")
                and await _bounded(asyncio.shield(processor), drain_until - loop.time(), "pipeline admission")
            )
            if not drained:
                processor.cancel()
            await asyncio.gather(processor, return_exceptions=True)
        unadmitted = [b for b in _take_all(self.queue) if b is not None]  # given back to their sources
        budget = max(0.0, drain_until - loop.time())
        await _bounded(self.pipeline.close(budget, unadmitted), budget + 0.5, "pipeline drain")
        await self._close_connections(deadline, watch, probes)
        log.info("daemon.stopped", exit_code=exit_code)
        return exit_code

    async def _close_connections(self, deadline: float, *tasks: asyncio.Task[None]) -> None:
        """Stop sources (final commits), the sink and the store, each bounded by what is left of the grace."""
        loop = asyncio.get_running_loop()
        for t in tasks:
            t.cancel()
        steps: list[tuple[str, Any]] = []
        if self.eos is not None:  # what the drain left open is aborted before the sources leave their groups
            steps.append(("transactions", self.eos.close))
        steps.extend((f"source {s.name}", s.stop) for s in self.sources)
        steps.append(("sink", self.sink.stop))
        if self.store is not None:
            steps.append(("dedup store", self.store.close))
        if self.pipeline.plugin is not None:
            steps.append(("state store", self.pipeline.plugin.close))
        for what, stop in steps:
            await _bounded(stop(), max(0.1, deadline - loop.time()), f"stopping {what}")
        await _bounded(asyncio.gather(*tasks, return_exceptions=True), max(0.1, deadline - loop.time()), "monitors")
        await _bounded(self.http.stop(), max(0.1, deadline - loop.time()), "http")

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("daemon.stop_requested")
            self.stopping.set()
            if self._watchdog is not None:  # the last resort, just before the grace period ends
                grace = self.cfg.shutdown.grace_seconds
                self._watchdog.arm(grace - min(0.3, grace * 0.05))


def _take_all(queue: asyncio.Queue[SourceBatch | None]) -> list[SourceBatch | None]:
    out: list[SourceBatch | None] = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def _bounded(aw: Any, seconds: float, what: str) -> bool:
    """Await ``aw`` for at most ``seconds``; False (logged) when it takes longer: it is then cancelled and left
    behind, not awaited (a client library may take its time to honour the cancellation)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        log.warning("daemon.shutdown_step_abandoned", step=what, seconds=round(seconds, 2))
        return False
    if task.cancelled():  # the awaited task was cancelled (e.g. a crashed processor), not this one
        return False
    exc = task.exception()
    if exc is not None:
        log.warning("daemon.shutdown_step_failed", step=what, error=scrub(f"{type(exc).__name__}: {exc}"))
        return False
    return True


def tune_gc() -> None:
    """Events are acyclic JSON trees freed by reference counting; the cyclic collector only costs time here
    (collections over a large reorder buffer stall the loop). Freeze what start-up allocated and make
    collections rare; ``_gc_loop`` keeps the scanned generations small while running."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 100, 100)


async def _gc_loop(freeze_every: float = 1.0, full_every: float = 300.0) -> None:
    """Every second, move surviving objects out of the collector's sight (``gc.freeze`` is O(1)), so young
    collections never walk the reorder buffer; every ``full_every`` seconds, one full collection reclaims
    whatever reference cycles were frozen meanwhile."""
    loop = asyncio.get_running_loop()
    next_full = loop.time() + full_every
    while True:
        await asyncio.sleep(freeze_every)
        if loop.time() >= next_full:
            gc.unfreeze()
            gc.collect()
            next_full = loop.time() + full_every
        gc.freeze()


def run_daemon(cfg: BridgeConfig) -> int:
    configure(cfg.log.level, cfg.log.format)
    tune_gc()
    watchdog = ShutdownWatchdog()
    try:
        return asyncio.run(Daemon(cfg, watchdog=watchdog).run())
    finally:
        watchdog.disarm()
