"""Assembly: turn a validated BridgeConfig into pipeline stages (router, dedup, reorder, pipeline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.config import BridgeConfig
from bridge.filters import CesqlFilter
from bridge.limits import MemoryBudget, Plan, plan
from bridge.metrics import Metrics
from bridge.model import Sink
from bridge.pipeline.admission import NormalizeFn, default_normalize
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, DedupMetrics, DedupStore, MemoryDedupStore
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.router import FilterMetrics, Route, RouteFilter, Router
from bridge.pipeline.transactions import Transactions
from bridge.pipeline.trust import TrustPolicy
from bridge.storeguard import StoreGuard, StoreMetrics

if TYPE_CHECKING:
    from bridge.state.lifecycle import Lifecycle
    from bridge.state.store import StateStore


def build_router(cfg: BridgeConfig, metrics: Metrics | None = None) -> Router:
    """The routes with their compiled filters; with ``metrics``, a CESQL filter's evaluation errors are counted in
    ``bridge_filter_errors_total{route,kind}`` (every kind exported at 0 from the start)."""
    routes = []
    for i, r in enumerate(cfg.routes):
        filters = []
        for j, f in enumerate(r.filters):
            matcher = f.compile(f"routes[{i}].filters[{j}]")
            if metrics is not None and isinstance(matcher, CesqlFilter):
                matcher = matcher.with_error_hook(FilterMetrics(metrics).error_counter(r.name))
            filters.append(RouteFilter(matcher, f.target))
        routes.append(Route(r.name, r.topic, tuple(filters), tuple(r.state_attributes) if r.changes_only else ()))
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


def build_state_store(cfg: BridgeConfig, dedup_store: DedupStore | None = None) -> StateStore:
    """The last states (``bridge.state.store``) where dedup ids live: Redis (sharing ``dedup_store``'s client
    when it is one) or memory."""
    from bridge.state.store import MemoryStateStore, RedisStateStore

    s, d = cfg.state, cfg.dedup
    if d.store != "redis":
        return MemoryStateStore(s.remember_seconds, s.max_subjects)
    from bridge.pipeline.redis_store import RedisDedupStore

    if isinstance(dedup_store, RedisDedupStore):
        return RedisStateStore(dedup_store.client, s.key_prefix, s.remember_seconds)
    return RedisStateStore.from_url(d.redis_url.get_secret_value(), s.key_prefix, s.remember_seconds,
                                    d.store_timeout_seconds)


def build_lifecycle(
    cfg: BridgeConfig, router: Router, metrics: Metrics, dedup: Deduplicator | None, store: StateStore | None = None
) -> Lifecycle | None:
    """``changes_only`` routes and the state topic (``bridge.state``), or None when the config has neither. The
    last states live where dedup ids do (Redis: the same client and failure policy)."""
    from bridge.state.lifecycle import Lifecycle

    changes = [r.name for r in router.routes if r.changes]
    s, d = cfg.state, cfg.dedup
    if not changes and s.topic is None:
        return None
    if store is None:
        store = build_state_store(cfg, dedup.store if dedup is not None else None)
    guard = dedup if dedup is not None else StoreGuard(
        timeout=d.store_timeout_seconds, on_store_error=d.on_store_error,
        on_store_failure=StoreMetrics(metrics).errors.inc, what="state store",
    )
    return Lifecycle(router.routes, store, metrics, topic=s.topic, guard=guard, config=s)


def build_pipeline(cfg: BridgeConfig, sink: Sink, metrics: Metrics | None = None,
                   store: DedupStore | None = None, budget: MemoryBudget | None = None,
                   normalize: NormalizeFn = default_normalize, state_store: StateStore | None = None,
                   transactions: Transactions | None = None) -> Pipeline:
    """The pipeline of ``cfg`` feeding ``sink``. With ``transactions`` (exactly-once delivery) the dedup ids and
    the last states are kept in memory whatever ``dedup.store`` says: their durable copy is the changelog topic,
    written in the same transactions as the outputs (``bridge.pipeline.transactions``)."""
    bounds = memory_plan(cfg)
    metrics = metrics if metrics is not None else Metrics()
    if transactions is not None:
        d, s = cfg.dedup, cfg.state
        store = MemoryDedupStore(d.window_seconds, min(d.max_entries, bounds.dedup_max_entries))
        from bridge.state.store import MemoryStateStore

        state_store = MemoryStateStore(s.remember_seconds, s.max_subjects)
    dedup = None
    if cfg.dedup.enabled:
        dedup = Deduplicator(
            store if store is not None else build_dedup_store(cfg, bounds),
            timeout=cfg.dedup.store_timeout_seconds,
            on_store_error=cfg.dedup.on_store_error,
            on_bypass=DedupMetrics(metrics).bypassed.inc,
            on_store_failure=StoreMetrics(metrics).errors.inc,
        )
    reorder = None
    if cfg.reorder.enabled:
        r = cfg.reorder
        reorder = ReorderBuffer(r.max_delay_ms / 1000.0, r.max_events, r.max_subjects, bounds.reorder_bytes)
    router = build_router(cfg, metrics)
    return Pipeline(
        router,
        sink,
        deadletter_topic=cfg.deadletter.topic,
        dedup=dedup,
        reorder=reorder,
        late_policy=cfg.reorder.late_policy,
        metrics=metrics,
        trust=TrustPolicy.compile(cfg.trust),
        budget=budget,
        max_outbox_bytes=bounds.delivery_bytes,
        normalize=normalize,
        plugin=build_lifecycle(cfg, router, metrics, dedup, state_store),
        delivery_depth=getattr(cfg.sink, "max_inflight_groups", 1) if cfg.sink is not None else 1,
        transactions=transactions,
    )
