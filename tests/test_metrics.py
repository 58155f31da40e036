"""bridge.metrics: each component declares what it writes in one registry; what /metrics exports before traffic."""

import pytest

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.metrics import DEADLETTERED, Metrics
from bridge.pipeline.admission import AdmissionMetrics
from bridge.pipeline.delivery import DeliveryMetrics
from bridge.testing import CapturingSink, InMemorySource
from testbed.prometheus import exported_sample_names


def test_a_daemon_primes_every_configured_series_at_zero_with_the_process_metrics() -> None:
    """Each configured source, route, dead-letter kind and the late policy has a 0 sample as soon as the daemon is
    built, and the process collector's start time (restarts) and resident memory are exported too."""
    cfg = parse_config({"routes": [{"name": "all", "topic": "a"}, {"name": "failed", "topic": "f"}],
                        "reorder": {"late_policy": "emit"}})
    daemon = Daemon(cfg, sources=[InMemorySource(name="kafka"), InMemorySource(name="sqs")], sink=CapturingSink())
    text = daemon.metrics.render().decode()
    for sample in (
        'bridge_ack_errors_total{source="sqs"} 0.0',
        'bridge_batches_acked_total{source="kafka"} 0.0',
        'bridge_events_unrouted_total{source="kafka"} 0.0',
        'bridge_events_out_total{route="failed"} 0.0',
        'bridge_deadlettered_total{kind="unpublishable"} 0.0',
        'bridge_late_events_total{policy="emit"} 0.0',
    ):
        assert sample in text.splitlines(), sample
    assert 'policy="drop"' not in text
    assert {"process_start_time_seconds", "process_resident_memory_bytes"} <= exported_sample_names(text)


def test_a_metric_two_components_write_is_one_metric_and_a_conflicting_declaration_fails() -> None:
    """Admission and delivery both declare the dead-letter counter from its one spec: they share it; declaring the
    same name with another help text is refused."""
    metrics = Metrics()
    assert AdmissionMetrics(metrics).deadlettered is DeliveryMetrics(metrics).deadlettered
    with pytest.raises(ValueError, match="declared twice differently"):
        metrics.counter(DEADLETTERED.name, "another text", DEADLETTERED.labels)
