"""Prometheus metrics of one bridge process (one registry per Metrics object, so tests can isolate)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from bridge.filters.cesql import GENERIC, RUNTIME_KINDS

# Reason kinds of bridge_deadlettered_total that the pipeline can produce.
DEADLETTER_KINDS = ("invalid", "error", "late", "untrusted", "unpublishable")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric the daemon exports; see README "Metrics" for the list."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if registry is None:  # a registry handed in may hold one already (prometheus_client's default does)
            # process_start_time_seconds (restarts), process_resident_memory_bytes, CPU, file descriptors (Linux)
            ProcessCollector(registry=r)
        self.messages_in = Counter(
            "bridge_messages_in", "Raw messages received, per source", ["source"], registry=r
        )
        self.events_in = Counter(
            "bridge_events_in", "Events normalized from received messages, per source", ["source"], registry=r
        )
        self.events_out = Counter(
            "bridge_events_out", "Events published and confirmed, per route", ["route"], registry=r
        )
        self.duplicates = Counter(
            "bridge_duplicates_dropped", "Duplicate events dropped, per source", ["source"], registry=r
        )
        self.unrouted = Counter(
            "bridge_events_unrouted", "Events that matched no route (dropped), per source", ["source"], registry=r
        )
        self.late = Counter("bridge_late_events", "Late events, per late policy", ["policy"], registry=r)
        self.deadlettered = Counter(
            "bridge_deadlettered", "Messages sent to the dead-letter topic, per reason kind", ["kind"], registry=r
        )
        self.untrusted = Counter(
            "bridge_untrusted", "Events outside the trust allow-lists (dead-lettered), per source", ["source"],
            registry=r,
        )
        self.undeliverable = Counter(
            "bridge_undeliverable", "Dead letters that the dead-letter topic itself refused (logged, dropped)",
            registry=r,
        )
        self.publish_errors = Counter(
            "bridge_publish_errors", "Failed publish attempts (retried)", registry=r
        )
        self.batches_acked = Counter(
            "bridge_batches_acked", "Source batches released upstream, per source", ["source"], registry=r
        )
        self.ack_errors = Counter(
            "bridge_ack_errors", "Source position releases that failed, per source", ["source"], registry=r
        )
        self.reorder_events = Gauge("bridge_reorder_buffer_events", "Events held in the reorder buffer", registry=r)
        self.reorder_subjects = Gauge(
            "bridge_reorder_buffer_subjects", "Subjects with events in the reorder buffer", registry=r
        )
        self.reorder_early = Counter(
            "bridge_reorder_early_flushes", "Events released early because the buffer was full", registry=r
        )
        self.inflight = Gauge("bridge_inflight_events", "Events accepted and not yet settled", registry=r)
        self.dedup_entries = Gauge("bridge_dedup_entries", "Ids remembered by the in-memory dedup store", registry=r)
        self.dedup_store_up = Gauge(
            "bridge_dedup_store_up", "1 while the last dedup store call succeeded (Redis), 0 while it fails",
            registry=r,
        )
        self.dedup_store_errors = Counter(
            "bridge_dedup_store_errors", "Failed or timed-out dedup store calls", registry=r
        )
        self.dedup_bypassed = Counter(
            "bridge_dedup_bypassed",
            "Events published without a dedup check because the store failed (dedup.on_store_error: pass)",
            registry=r,
        )
        self.ready = Gauge("bridge_ready", "1 when /readyz answers 200", registry=r)
        self.stalled = Gauge(
            "bridge_pipeline_stalled",
            "1 while work is pending and nothing was settled or acked for readiness.stall_seconds",
            registry=r,
        )
        self.progress_age = Gauge(
            "bridge_seconds_since_progress",
            "Seconds since the last event was settled or batch acked (0 while there is no pending work)",
            registry=r,
        )
        self.broker_up = Gauge(
            "bridge_broker_up", "1 when the last metadata probe of a Kafka cluster answered in time",
            ["client"], registry=r,
        )
        self.consumer_lag = Gauge(
            "bridge_consumer_lag", "Messages behind the end of the partition, where the broker tells it",
            ["source", "partition"], registry=r,
        )
        self.source_up = Gauge("bridge_source_up", "1 when the source is connected and consuming", ["source"],
                               registry=r)
        self.publish_latency = Histogram(
            "bridge_publish_latency_seconds", "Time to publish a group of records and get broker confirmation",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.held_bytes = Gauge(
            "bridge_held_bytes", "Bytes of events held, per stage (source: fetched, not yet admitted; reorder; "
            "delivery: outbox and in-flight publishes)", ["stage"], registry=r,
        )
        self.memory_budget = Gauge(
            "bridge_memory_budget_bytes", "The held-bytes budget (from limits.memory_mb); sources pause at it",
            registry=r,
        )
        self.memory_limit = Gauge(
            "bridge_memory_limit_bytes", "limits.memory_mb (configured, from the cgroup, or the default) in bytes",
            registry=r,
        )
        self.source_pauses = Counter(
            "bridge_source_pauses", "Times the sources stopped fetching because the memory budget was full",
            registry=r,
        )
        self.unchanged = Counter(
            "bridge_events_unchanged", "Events a changes_only route did not publish: same state as the last one it "
            "published for the subject, or late, per route", ["route"], registry=r,
        )
        self.state_unchecked = Counter(
            "bridge_state_unchecked", "State decisions (changes_only routes, state topic) made without the state "
            "store because it failed (dedup.on_store_error: pass): published as changes", registry=r,
        )
        self.filter_errors = Counter(
            "bridge_filter_errors", "CESQL filter evaluations that ended in an error (the event did not match the "
            "route), per route and CESQL error kind", ["route", "kind"], registry=r,
        )
        self.e2e_latency = Histogram(
            "bridge_event_latency_seconds", "From receipt of a message to confirmed publish of its event",
            buckets=LATENCY_BUCKETS, registry=r,
        )

    def prime(self, sources: list[str], routes: list[str], late_policy: str | None) -> None:
        """Export every series the configuration makes possible at 0 from the start: a counter that appears only
        with its first increment hides that increment from rate() and leaves dashboards and alerts without data."""
        for source in sources:
            for per_source in (self.messages_in, self.events_in, self.duplicates, self.unrouted, self.untrusted,
                               self.batches_acked, self.ack_errors):
                per_source.labels(source)
        for route in routes:
            self.events_out.labels(route)
        for kind in DEADLETTER_KINDS:
            self.deadlettered.labels(kind)
        if late_policy is not None:
            self.late.labels(late_policy)

    def prime_state(self, changes_only_routes: list[str], state_route: str | None) -> None:
        """The series of ``bridge.state``: unchanged events per changes_only route, the state topic's route."""
        for route in changes_only_routes:
            self.unchanged.labels(route)
        if state_route is not None:
            self.events_out.labels(state_route)

    def filter_error_counter(self, route: str) -> Callable[[str], None]:
        """What a route's CESQL filter calls with the kind of each evaluation error; exports the route's series of
        every kind at 0."""
        children = {kind: self.filter_errors.labels(route, kind) for kind in RUNTIME_KINDS}

        def count(kind: str) -> None:
            children.get(kind, children[GENERIC]).inc()

        return count

    def render(self) -> bytes:
        return generate_latest(self.registry)
