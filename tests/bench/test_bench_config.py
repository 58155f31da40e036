"""The bridge configuration the benchmark runs (bench/bridge_proc.py), without a broker."""

from __future__ import annotations

from pathlib import Path

from bench.bridge_proc import Topics, bench_config
from bench.data import generate
from bridge.app import build_router
from bridge.config import parse_config
from bridge.model import RawMessage
from bridge.normalize import normalize_all


def test_extra_routes_are_evaluated_but_match_no_bench_event(shared_dir: Path) -> None:
    """``--routes N`` adds N - 2 routes that every bench event is tested against and none matches, so a larger
    filter set costs filter work only, never more output records."""
    cfg = parse_config(bench_config("localhost:9092", Topics.named("t"), "g", 8080, idempotent=True, routes=8),
                       env={})
    assert [r.name for r in cfg.routes] == ["jobs", "models", *(f"extra{i}" for i in range(6))]
    router = build_router(cfg)
    ds = generate(600, subjects=60, corpus=shared_dir / "corpus")
    matched: set[str] = set()
    for _, body in ds.records:
        for event in normalize_all(RawMessage(body))[0]:
            matched.update(route.name for route in router.match(event))
    assert matched == {"jobs", "models"}
