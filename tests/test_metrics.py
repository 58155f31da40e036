"""bridge.metrics: what /metrics exports before any traffic."""

from bridge.metrics import Metrics
from testbed.prometheus import exported_sample_names


def test_prime_exports_every_configured_series_at_zero_with_the_process_metrics() -> None:
    """After prime(), each configured source, route, dead-letter kind and the late policy has a 0 sample, and the
    process collector's start time (restarts) and resident memory are exported too."""
    metrics = Metrics()
    metrics.prime(["kafka", "sqs"], ["all", "failed"], "emit")
    text = metrics.render().decode()
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
