"""Prometheus metrics of one bridge process: one registry (``Metrics``, one per process, so tests can isolate) in
which each component declares the metrics it writes.

A component declares its metrics in a ``MetricGroup`` of its own module (``AdmissionMetrics`` in
``bridge/pipeline/admission.py``, ``ReadinessMetrics`` in ``bridge/readiness.py``, ...) and writes only those.
Declaring is idempotent: a metric two components write (the dead letters, per kind, from admission, ordering and
delivery) is declared by both from one ``Spec`` here and is one metric. ``prime`` exports every series the
configuration makes possible at 0 from the start. README "Metrics" lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

# Reason kinds of bridge_deadlettered_total that the pipeline can produce.
DEADLETTER_KINDS = ("invalid", "error", "late", "untrusted", "unpublishable")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Spec(NamedTuple):
    """A metric several components write: declared by each from this one spec."""

    name: str
    doc: str
    labels: tuple[str, ...] = ()


DEADLETTERED = Spec("bridge_deadlettered", "Messages sent to the dead-letter topic, per reason kind", ("kind",))
EVENTS_OUT = Spec("bridge_events_out", "Events published and confirmed, per route", ("route",))

_Metric = Counter | Gauge | Histogram


class Metrics:
    """The registry of one process and the metrics declared in it (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:  # a registry handed in may hold one already (prometheus_client's default does)
            # process_start_time_seconds (restarts), process_resident_memory_bytes, CPU, file descriptors (Linux)
            ProcessCollector(registry=self.registry)
        self._declared: dict[str, tuple[type[_Metric], str, tuple[str, ...], _Metric]] = {}
        self._unprimed: set[str] = set()

    def _declare(self, kind: type[_Metric], name: str, doc: str, labels: Sequence[str],
                 buckets: Sequence[float] | None = None) -> _Metric:
        labels = tuple(labels)
        known = self._declared.get(name)
        if known is not None:
            if known[:3] != (kind, doc, labels):
                raise ValueError(f"metric {name} declared twice differently: {known[:3]} and {(kind, doc, labels)}")
            return known[3]
        if buckets is not None:
            metric: _Metric = Histogram(name, doc, labels, buckets=buckets, registry=self.registry)
        else:
            metric = kind(name, doc, labels, registry=self.registry)
        self._declared[name] = (kind, doc, labels, metric)
        return metric

    def counter(self, name: str, doc: str, labels: Sequence[str] = (), *, prime: bool = True) -> Counter:
        """Declare (or get the declared) counter; ``prime=False``: ``prime`` leaves its series to its writer."""
        metric = self._declare(Counter, name, doc, labels)
        assert isinstance(metric, Counter)
        if not prime:
            self._unprimed.add(name)
        return metric

    def counter_of(self, spec: Spec) -> Counter:
        return self.counter(spec.name, spec.doc, spec.labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        metric = self._declare(Gauge, name, doc, labels)
        assert isinstance(metric, Gauge)
        return metric

    def histogram(self, name: str, doc: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        metric = self._declare(Histogram, name, doc, (), buckets)
        assert isinstance(metric, Histogram)
        return metric

    def prime(self, **values: Iterable[str]) -> None:
        """Export every series the configuration makes possible at 0 from the start (a counter that appears only
        with its first increment hides that increment from rate() and leaves dashboards and alerts without data):
        each declared counter with one label gets a series per value given for that label name
        (``prime(source=[...], route=[...], kind=DEADLETTER_KINDS, policy=[...])``)."""
        given = {label: list(vs) for label, vs in values.items()}
        for name, (kind, _, labels, metric) in self._declared.items():
            if kind is Counter and len(labels) == 1 and labels[0] in given and name not in self._unprimed:
                for value in given[labels[0]]:
                    metric.labels(value)

    def counts(self, name: str, label: str) -> dict[str, float]:
        """A counter's totals per value of its label (what a tool reports after a run)."""
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == f"{name}_total" and label in sample.labels:
                    out[sample.labels[label]] = sample.value
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricGroup:
    """The metrics one component writes; a subclass declares them in its ``__init__`` from the process's
    ``Metrics``. Every subclass is listed in ``MetricGroup.groups`` (what the bridge can export in all)."""

    groups: ClassVar[list[type[MetricGroup]]] = []

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        MetricGroup.groups.append(cls)

    def __init__(self, metrics: Metrics) -> None:
        """Subclasses declare their metrics from ``metrics`` (and call this first)."""
