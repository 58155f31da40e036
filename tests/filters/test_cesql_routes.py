"""CESQL in routes: the dialect recognised by its key, compiled at load, run by the pipeline on the corpus, and
evaluation errors counted in bridge_filter_errors_total{route,kind}."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bridge.app import build_pipeline, build_router
from bridge.config import parse_config
from bridge.filters import CesqlFilter, FilterError, compile_filter, detect_dialect
from bridge.filters.cesql import RUNTIME_KINDS
from bridge.metrics import Metrics
from bridge.model import RawMessage, SourceBatch
from bridge.testing.memory import CapturingSink

ROUTES = [
    {"name": "failed", "topic": "ml.failed", "filters": [
        {"cesql": "type = 'ml.job.status_changed' AND status = 'failed' AND platform IN ('azureml', 'sagemaker')"}]},
    {"name": "training", "topic": "ml.training", "filters": [{"cesql": "subject LIKE 'training-job/%'"}]},
    {"name": "stopped", "topic": "ml.stopped", "filters": [{"cesql": "status = 'stopped'"}]},
    {"name": "registered", "topic": "ml.models", "filters": [
        {"eventbridge": {"type": ["ml.model.registered"]}}, {"cesql": "platform = 'azureml'"}]},
]


def test_the_dialect_is_recognised_by_its_key() -> None:
    """A filter with the key "cesql" holding a string is CESQL; "cesql" holding a list stays an EventBridge field."""
    assert detect_dialect({"cesql": "status = 'failed'"}) == "cesql"
    assert isinstance(compile_filter({"cesql": "status = 'failed'"}), CesqlFilter)
    assert detect_dialect({"cesql": ["x"]}) == "eventbridge"
    assert compile_filter({"cesql": ["x"]}).matches({"cesql": "x"})
    assert compile_filter({"cesql": "TRUE"}, "cesql").dialect == "cesql"


@pytest.mark.parametrize(("spec", "path", "words"), [
    ({"cesql": "status = ", "x": 1}, "routes[0].x", 'single key "cesql"'),
    ({"cesql": 5}, "routes[0].cesql", "a CESQL expression is a string"),
    ({"cesql": "(status = 'failed'"}, "routes[0].cesql", "parse error at position 19"),
    ({"cesql": "CONCAT(subject, '!')"}, "routes[0].cesql", "gives String values"),
    ({"cesql": "nope(1) = 1"}, "routes[0].cesql", "position 1: there is no function NOPE"),
])
def test_compile_errors_name_the_path(spec: dict[str, object], path: str, words: str) -> None:
    """A CESQL filter that cannot be compiled raises FilterError with the path of the expression and the reason."""
    with pytest.raises(FilterError) as info:
        compile_filter(spec, "cesql", "routes[0]")
    assert info.value.path == path and words in info.value.message


def _corpus(shared_dir: Path) -> list[RawMessage]:
    names = ["azureml_eventgrid.jsonl", "azureml_cloudevents.jsonl", "sagemaker.jsonl"]
    lines = [line for n in names for line in (shared_dir / "corpus" / n).read_bytes().splitlines() if line.strip()]
    return [RawMessage(line, source="test", position=str(i)) for i, line in enumerate(lines)]


async def test_routes_with_cesql_filters_on_the_corpus(shared_dir: Path) -> None:
    """The pipeline routes the corpus with CESQL filters exactly as the expressions say, and each evaluation that
    ends in an error (a model registration has no status) is counted per route and kind, every kind exported."""
    cfg = parse_config({"dedup": {"enabled": False}, "reorder": {"enabled": False}, "routes": ROUTES})
    metrics = Metrics(CollectorRegistry())
    sink = CapturingSink()
    pipeline = build_pipeline(cfg, sink, metrics)
    messages = _corpus(shared_dir)
    await pipeline.submit(SourceBatch(messages, None, "test"))
    await pipeline.flush()
    await pipeline.close(grace=5.0)

    routed = sink.routed
    by_route = {name: [r.event for r in routed if r.route == name] for name in ("failed", "training", "stopped",
                                                                                 "registered")}
    assert by_route["failed"] and all(e.type == "ml.job.status_changed" and e.status == "failed"
                                      for e in by_route["failed"])
    assert by_route["training"] and all(e.subject.startswith("training-job/") for e in by_route["training"])
    assert all(e.status == "stopped" for e in by_route["stopped"])
    assert by_route["registered"] and all(e.type == "ml.model.registered" and e.platform == "azureml"
                                          for e in by_route["registered"])

    everything = CapturingSink()
    plain = build_pipeline(parse_config({"dedup": {"enabled": False}, "reorder": {"enabled": False}}), everything)
    await plain.submit(SourceBatch(_corpus(shared_dir), None, "test"))
    await plain.flush()
    await plain.close(grace=5.0)
    events = [r.event for r in everything.routed]
    assert len(by_route["failed"]) == sum(e.type == "ml.job.status_changed" and e.status == "failed" for e in events)
    without_status = sum(e.status is None for e in events)
    assert without_status > 0

    def count(route: str, kind: str) -> float | None:
        return metrics.registry.get_sample_value("bridge_filter_errors_total", {"route": route, "kind": kind})

    # "failed" reads status only after type = 'ml.job.status_changed'; "stopped" reads it on every event
    assert count("stopped", "missingAttribute") == without_status
    assert count("failed", "missingAttribute") == sum(e.status is None and e.type == "ml.job.status_changed"
                                                      for e in events)
    for route in ("failed", "training", "stopped", "registered"):
        for kind in RUNTIME_KINDS:
            if (route, kind) not in {("stopped", "missingAttribute"), ("failed", "missingAttribute")}:
                assert count(route, kind) == 0, (route, kind)


def test_without_metrics_the_router_counts_nothing_and_still_filters() -> None:
    """build_router without metrics gives the plain compiled filters (no hook), matching as usual."""
    cfg = parse_config({"routes": ROUTES})
    router = build_router(cfg)
    matcher = router.routes[2].filters[0].matcher
    assert isinstance(matcher, CesqlFilter) and matcher._hook is None
    assert matcher.matches({"status": "stopped"}) and not matcher.matches({})
