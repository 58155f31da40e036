"""Readiness and the HTTP endpoints of ``bridge run``: /healthz, /readyz, /metrics.

``Readiness`` decides whether the bridge is ready and why not, from what it is handed: the sink, the sources, the
pipeline (publish failures, the dedup store and the plug-in's store, progress), whether work is pending, the
broker probes and the stall watch (``bridge.health``). /readyz answers 503 with ``reasons`` while the sink or a
source is not connected, a publish is failing, the dedup or state store fails under ``block``, a Kafka broker does
not answer its probe, or the pipeline is stalled; /healthz answers 200 as long as the process runs. ``watch``
refreshes the readiness gauges every second and logs each change with its reasons.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web

from bridge.health import BrokerProbes, StallWatch
from bridge.metrics import MetricGroup, Metrics
from bridge.model import Probe, Sink, Source
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import MemoryDedupStore

log = structlog.get_logger("bridge.daemon")


class ReadinessMetrics(MetricGroup):
    """What readiness writes: its verdict, the brokers' and sources' state, the dedup store's."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.ready = m.gauge("bridge_ready", "1 when /readyz answers 200")
        self.stalled = m.gauge("bridge_pipeline_stalled",
                               "1 while work is pending and nothing was settled or acked for readiness.stall_seconds")
        self.progress_age = m.gauge("bridge_seconds_since_progress", "Seconds since the last event was settled or "
                                    "batch acked (0 while there is no pending work)")
        self.broker_up = m.gauge("bridge_broker_up",
                                 "1 when the last metadata probe of a Kafka cluster answered in time", ["client"])
        self.consumer_lag = m.gauge("bridge_consumer_lag",
                                    "Messages behind the end of the partition, where the broker tells it",
                                    ["source", "partition"])
        self.source_up = m.gauge("bridge_source_up", "1 when the source is connected and consuming", ["source"])
        self.dedup_entries = m.gauge("bridge_dedup_entries", "Ids remembered by the in-memory dedup store")
        self.dedup_store_up = m.gauge("bridge_dedup_store_up",
                                      "1 while the last dedup store call succeeded (Redis), 0 while it fails")


class Readiness:
    """Whether the bridge is ready, and why not (see the module docstring)."""

    def __init__(self, sink: Sink, sources: Sequence[Source], pipeline: Pipeline, metrics: Metrics, *,
                 pending: Callable[[], bool], stopping: asyncio.Event, stall: StallWatch,
                 probes: BrokerProbes) -> None:
        self.sink = sink
        self.sources = sources
        self.pipeline = pipeline
        self.metrics = ReadinessMetrics(metrics)
        self.pending = pending
        self.stopping = stopping
        self.stall = stall
        self.probes = probes
        self._was_ready: bool | None = None

    def reasons(self) -> list[str]:
        """Why /readyz answers 503 (empty: ready)."""
        reasons: list[str] = []
        if self.stopping.is_set():
            reasons.append("stopping")
        if not self.sink.ready:
            reasons.append("sink: not connected")
        if self.pipeline.publish_failing:
            reasons.append("sink: publish failing (retrying)")
        for s in self.sources:
            if not s.ready:
                reasons.append(f"source {s.name}: not connected")
        dedup = self.pipeline.dedup
        if dedup is not None and dedup.store_error is not None and dedup.on_store_error == "block":
            reasons.append(f"dedup store: {dedup.store_error} (retrying; the pipeline waits)")
        state = self.pipeline.plugin.store if self.pipeline.plugin is not None else None
        if state is not None and state is not dedup and state.store_error and state.on_store_error == "block":
            reasons.append(f"state store: {state.store_error} (retrying; the pipeline waits)")
        for name, error in sorted(self.probes.errors.items()):
            reasons.append(f"{name}: broker unreachable: {error}")
        if self.stall.observe(self.pending(), self.pipeline.last_progress):
            reasons.append(f"pipeline stalled: work pending and no progress for {self.stall.age:.0f} s")
        return reasons

    def ready(self) -> bool:
        return not self.reasons()

    def body(self) -> dict[str, Any]:
        """The /readyz body."""
        reasons = self.reasons()
        dedup = self.pipeline.dedup
        body: dict[str, Any] = {
            "ready": not reasons,
            "sink": self.sink.ready and not self.pipeline.publish_failing and "sink" not in self.probes.errors,
            "sources": {s.name: s.ready and f"source {s.name}" not in self.probes.errors for s in self.sources},
            "stalled": self.stall.stalled,
            "seconds_since_progress": round(self.stall.age, 1),
        }
        if dedup is not None:
            body["dedup"] = {"ok": dedup.store_error is None, "on_store_error": dedup.on_store_error}
            if dedup.store_error is not None:
                body["dedup"]["error"] = dedup.store_error
        if reasons:
            body["reasons"] = reasons
        return body

    def probe_targets(self) -> dict[str, Probe | None]:
        """The Kafka clients the broker probes ask for metadata (``None``: not started, or no such check)."""
        targets: dict[str, Probe | None] = {"sink": self.sink.probe()}
        for s in self.sources:
            targets[f"source {s.name}"] = s.probe()
        return targets

    def refresh_gauges(self, body: dict[str, Any]) -> None:
        m = self.metrics
        for s in self.sources:
            m.source_up.labels(s.name).set(1 if s.ready else 0)
            try:
                for part, value in s.lag().items():
                    m.consumer_lag.labels(s.name, str(part)).set(value)
            except Exception as exc:
                log.debug("daemon.lag_unavailable", source=s.name, error=str(exc))
        dedup = self.pipeline.dedup
        if dedup is not None and isinstance(dedup.store, MemoryDedupStore):
            m.dedup_entries.set(len(dedup.store))
        elif dedup is not None:
            m.dedup_store_up.set(0 if dedup.store_error is not None else 1)
        for name, probe in self.probe_targets().items():
            if probe is not None:
                m.broker_up.labels(name).set(0 if name in self.probes.errors else 1)
        m.ready.set(1 if body["ready"] else 0)
        m.stalled.set(1 if body["stalled"] else 0)
        m.progress_age.set(body["seconds_since_progress"])

    async def watch(self, every: float = 1.0) -> None:
        """Refresh the readiness gauges each second and log every readiness change with its reasons."""
        while True:
            body = self.body()
            self.refresh_gauges(body)
            if body["ready"] != self._was_ready:
                if body["ready"]:
                    log.info("daemon.ready")
                elif self._was_ready is not None:
                    log.warning("daemon.not_ready", reasons=body.get("reasons", []))
                self._was_ready = body["ready"]
            await asyncio.sleep(every)


class HttpServer:
    """/healthz (liveness), /readyz (``Readiness``) and /metrics (the process's registry)."""

    def __init__(self, readiness: Readiness, metrics: Metrics, host: str, port: int) -> None:
        self.readiness = readiness
        self.metrics = metrics
        self.host = host
        self.configured_port = port
        self.port: int | None = None
        """The port listened on, once started (the configured one, or the one picked for port 0)."""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.configured_port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.configured_port
        log.info("daemon.http_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        body = self.readiness.body()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        self.readiness.refresh_gauges(self.readiness.body())
        return web.Response(body=self.metrics.render(), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})
