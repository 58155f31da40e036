"""``bridge run``: sources -> pipeline -> Kafka sink, with /healthz, /readyz, /metrics and clean shutdown.

Every source runs in its own task, reconnecting with backoff, and feeds one bounded queue; one loop
drains the queue into the pipeline and releases reorder-buffer deadlines. SIGTERM/SIGINT stop pulling,
drain the queue, the reorder buffer and the in-flight publishes within ``shutdown.grace_seconds``,
release (commit) source positions, and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import Any

import structlog
from aiohttp import web

from bridge.aio import reraise_if_cancelled
from bridge.app import build_dedup_store, build_pipeline
from bridge.config import BridgeConfig
from bridge.logs import configure, scrub
from bridge.metrics import Metrics
from bridge.model import Sink, Source, SourceBatch
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import MemoryDedupStore

log = structlog.get_logger("bridge.daemon")


def build_source(cfg: Any) -> Source:
    if cfg.type == "kafka":
        from bridge.sources.kafka import KafkaSource

        return KafkaSource(cfg)
    if cfg.type == "sqs":
        from bridge.sources.sqs import SqsSource

        return SqsSource(cfg)
    if cfg.type == "eventhubs":
        from bridge.sources.eventhubs import EventHubsSource

        return EventHubsSource(cfg)
    raise ValueError(f"unknown source type {cfg.type!r}")


def build_sink(cfg: BridgeConfig) -> Sink:
    from bridge.sinks.kafka import KafkaSink

    assert cfg.sink is not None
    return KafkaSink(cfg.sink)


class Daemon:
    """The running bridge. ``run()`` returns the process exit code."""

    def __init__(self, cfg: BridgeConfig, sources: list[Source] | None = None, sink: Sink | None = None) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.sources = sources if sources is not None else [build_source(s) for s in cfg.sources]
        self.sink = sink if sink is not None else build_sink(cfg)
        self.store = build_dedup_store(cfg) if cfg.dedup.enabled else None
        self.pipeline: Pipeline = build_pipeline(cfg, self.sink, self.metrics, self.store)
        self.metrics.prime([s.name for s in self.sources], [r.name for r in cfg.routes],
                           cfg.reorder.late_policy if cfg.reorder.enabled else None)
        self.queue: asyncio.Queue[SourceBatch | None] = asyncio.Queue(maxsize=8)
        self.stopping = asyncio.Event()
        self.sink_ready = False
        self.http_port: int | None = None
        self._runner: web.AppRunner | None = None

    # -- readiness -------------------------------------------------------------------------------
    def source_ready(self, src: Source) -> bool:
        return bool(getattr(src, "ready", True))

    def ready(self) -> bool:
        return (
            self.sink_ready
            and not self.pipeline.publish_failing
            and not self.stopping.is_set()
            and all(self.source_ready(s) for s in self.sources)
        )

    # -- HTTP ------------------------------------------------------------------------------------
    async def _start_http(self) -> None:
        app = web.Application()

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        async def readyz(_: web.Request) -> web.Response:
            detail = {s.name: self.source_ready(s) for s in self.sources}
            sink_ok = self.sink_ready and not self.pipeline.publish_failing
            body = {"ready": self.ready(), "sink": sink_ok, "sources": detail}
            return web.json_response(body, status=200 if body["ready"] else 503)

        async def metrics(_: web.Request) -> web.Response:
            self._refresh_gauges()
            return web.Response(body=self.metrics.render(), content_type="text/plain",
                                headers={"X-Content-Type-Options": "nosniff"})

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.http.host, self.cfg.http.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.cfg.http.port
        log.info("http listening", host=self.cfg.http.host, port=self.http_port)

    def _refresh_gauges(self) -> None:
        for s in self.sources:
            self.metrics.source_up.labels(s.name).set(1 if self.source_ready(s) else 0)
            lag = getattr(s, "lag", None)
            if callable(lag):
                try:
                    for part, value in lag().items():
                        self.metrics.consumer_lag.labels(s.name, str(part)).set(value)
                except Exception as exc:
                    log.debug("lag unavailable", source=s.name, error=str(exc))
        if isinstance(self.store, MemoryDedupStore):
            self.metrics.dedup_entries.set(len(self.store))

    # -- connections -----------------------------------------------------------------------------
    async def _with_backoff(self, what: str, fn: Any) -> bool:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                await fn()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("connect failed; retrying", target=what, retry_in=delay,
                            error=scrub(f"{type(exc).__name__}: {exc}"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def _pump(self, src: Source) -> None:
        """Read one source forever, reconnecting with backoff when it fails."""
        while not self.stopping.is_set():
            if not await self._with_backoff(f"source {src.name}", src.start):
                return
            log.info("source started", source=src.name)
            try:
                async for batch in src.batches():
                    await self.queue.put(batch)
                    if self.stopping.is_set():
                        break
                if self.stopping.is_set():
                    return
                log.warning("source ended; restarting", source=src.name)
            except (asyncio.CancelledError, Exception) as exc:
                reraise_if_cancelled(exc)
                log.error("source failed; reconnecting", source=src.name, error=scrub(f"{type(exc).__name__}: {exc}"))
                with contextlib.suppress(Exception):
                    await src.stop()
                await asyncio.sleep(1.0)

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
            await pipeline.submit(batch)
            pipeline.tick()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        if not self.cfg.trust.configured:
            log.warning("trust not configured: events are accepted from every workspace, account and source",
                        hint="set trust.azure_workspaces / aws_accounts / aws_regions / event_sources")
        await self._start_http()
        if not await self._with_backoff("sink", self.sink.start):  # stopped while still connecting
            await self._shutdown_http()
            log.info("bridge stopped", exit_code=0)
            return 0
        self.sink_ready = True
        worker = self.pipeline.start()
        pumps = [asyncio.create_task(self._pump(s), name=f"source-{s.name}") for s in self.sources]
        processor = asyncio.create_task(self._process(), name="pipeline")
        gc_task = asyncio.create_task(_gc_loop(), name="gc")
        log.info("bridge running", sources=[s.name for s in self.sources],
                 routes=[r.name for r in self.cfg.routes])
        stop_wait = asyncio.create_task(self.stopping.wait())
        # the processor and the delivery worker run until stop: either ending first is a crash, never a stall
        await asyncio.wait([stop_wait, processor, worker], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        for task, what in ((processor, "pipeline"), (worker, "delivery worker")):
            if task.done() and not self.stopping.is_set():
                exc = None if task.cancelled() else task.exception()
                error = scrub(f"{type(exc).__name__}: {exc}") if exc is not None else "ended unexpectedly"
                log.error(f"{what} failed; stopping", error=error)
                exit_code = 1
                self.stopping.set()
        stop_wait.cancel()
        gc_task.cancel()
        log.info("shutting down", grace_seconds=self.cfg.shutdown.grace_seconds)
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if not processor.done():
            if exit_code:  # a crash: the processor may wait for a delivery worker that is gone
                processor.cancel()
            else:
                await self.queue.put(None)  # batches already pulled are processed, not lost
            await asyncio.gather(processor, return_exceptions=True)
        await self.pipeline.close(self.cfg.shutdown.grace_seconds)
        for s in self.sources:
            with contextlib.suppress(Exception):
                await s.stop()
        with contextlib.suppress(Exception):
            await self.sink.stop()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()
        await self._shutdown_http()
        log.info("bridge stopped", exit_code=exit_code)
        return exit_code

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stop requested")
            self.stopping.set()

    async def _shutdown_http(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


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
    return asyncio.run(Daemon(cfg).run())
