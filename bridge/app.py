"""Assembly: turn a validated BridgeConfig into pipeline stages (router, dedup, reorder, pipeline)."""

from __future__ import annotations

from bridge.config import BridgeConfig
from bridge.filters import compile_filter
from bridge.limits import MemoryBudget, Plan, plan
from bridge.metrics import Metrics
from bridge.model import Sink
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, DedupStore, MemoryDedupStore
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import Route, RouteFilter, Router
from bridge.pipeline.trust import TrustPolicy


def build_router(cfg: BridgeConfig) -> Router:
    routes = []
    for i, r in enumerate(cfg.routes):
        filters = tuple(
            RouteFilter(compile_filter(f.pattern, f.dialect, f"routes[{i}].filters[{j}].pattern"), f.target)
            for j, f in enumerate(r.filters)
        )
        routes.append(Route(r.name, r.topic, filters))
    return Router(routes)


def memory_plan(cfg: BridgeConfig) -> Plan:
    """The byte bounds of this process (``limits.memory_mb``, else the cgroup limit, else the default)."""
    return plan(cfg.limits)


def build_dedup_store(cfg: BridgeConfig, bounds: Plan | None = None) -> DedupStore:
    d = cfg.dedup
    if d.store == "redis":
        from bridge.pipeline.redis_store import RedisDedupStore

        return RedisDedupStore(d.redis_url.get_secret_value(), d.window_seconds, d.key_prefix, d.store_timeout_seconds)
    bounds = bounds or memory_plan(cfg)
    return MemoryDedupStore(d.window_seconds, min(d.max_entries, bounds.dedup_max_entries))


def build_pipeline(cfg: BridgeConfig, sink: Sink, metrics: Metrics | None = None,
                   store: DedupStore | None = None, budget: MemoryBudget | None = None) -> Pipeline:
    bounds = memory_plan(cfg)
    dedup = None
    if cfg.dedup.enabled:
        m = metrics
        dedup = Deduplicator(
            store if store is not None else build_dedup_store(cfg, bounds),
            timeout=cfg.dedup.store_timeout_seconds,
            on_store_error=cfg.dedup.on_store_error,
            on_bypass=m.dedup_bypassed.inc if m is not None else None,
            on_store_failure=m.dedup_store_errors.inc if m is not None else None,
        )
    reorder = None
    if cfg.reorder.enabled:
        r = cfg.reorder
        reorder = ReorderBuffer(r.max_delay_ms / 1000.0, r.max_events, r.max_subjects, bounds.reorder_bytes)
    return Pipeline(
        build_router(cfg),
        sink,
        deadletter_topic=cfg.deadletter.topic,
        dedup=dedup,
        reorder=reorder,
        late_policy=cfg.reorder.late_policy,
        metrics=metrics,
        trust=TrustPolicy.compile(cfg.trust),
        budget=budget,
        max_outbox_bytes=bounds.delivery_bytes,
    )
