"""Admission isolates failures per message and per event: an exception while normalizing, routing or encoding
dead-letters that one message or event with the exception's type and text; the rest of the batch flows."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from bridge.envelope import CloudEvent
from bridge.model import RawMessage
from bridge.pipeline.core import Pipeline
from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
from bridge.pipeline.router import Route, RouteFilter, Router
from bridge.retry import Backoff
from bridge.testing.events import make_event
from bridge.testing.memory import CapturingSink, InMemorySource


def poisoned_normalize(msg: RawMessage) -> tuple[list[CloudEvent], list[Exception]]:
    doc = orjson.loads(msg.body)
    if doc.get("poison"):
        raise RuntimeError("boom in the normalizer")
    return [make_event(doc["id"], doc.get("subject", "s"))], []


class ExplodingFilter:
    """Raises for events whose id starts with 'bad' (a filter bug met by one event)."""

    def matches(self, event: Any) -> bool:
        if str(event.get("id", "")).startswith("bad"):
            raise ValueError("filter cannot handle this value")
        return True


def pipeline(sink: CapturingSink, routes: list[Route] | None = None) -> Pipeline:
    return Pipeline(Router(routes or [Route("all", "out")]), sink, dedup=Deduplicator(MemoryDedupStore()),
                    normalize=poisoned_normalize, retry_backoff=Backoff(0.001, 0.01))


async def drain(p: Pipeline, src: InMemorySource) -> None:
    src.close_input()
    async for batch in src.batches():
        await p.submit(batch)
    await p.flush()


async def test_an_exception_in_the_normalizer_dead_letters_only_that_message() -> None:
    """A message whose normalization raises is dead-lettered (kind error, reason with the exception type and
    text, the raw body kept); the messages around it are published and the batch is acked once."""
    sink = CapturingSink()
    src = InMemorySource([{"id": "a"}, {"id": "p", "poison": True}, {"id": "b"}], batch_size=10)
    p = pipeline(sink)
    await drain(p, src)
    assert [d.event.id for d in sink.routed] == ["a", "b"]
    (dead,) = sink.dead
    assert dead.reason == "normalize failed: RuntimeError: boom in the normalizer"
    assert orjson.loads(dead.raw) == {"id": "p", "poison": True}
    assert dead.position == "memory@2"
    assert p.metrics.registry.get_sample_value("bridge_deadlettered_total", {"kind": "error"}) == 1
    assert src.all_acked_once


async def test_an_exception_in_a_filter_dead_letters_only_that_event_and_does_not_remember_it() -> None:
    """An event whose routing raises is dead-lettered with the reason; its id is not recorded by dedup, so once
    the filter is fixed a redelivered copy is published instead of being dropped as a duplicate."""
    sink = CapturingSink()
    routes = [Route("all", "out", (RouteFilter(ExplodingFilter()),))]
    p = pipeline(sink, routes)
    await drain(p, InMemorySource([{"id": "ok-1"}, {"id": "bad-1"}, {"id": "ok-2"}]))
    assert [d.event.id for d in sink.routed] == ["ok-1", "ok-2"]
    (dead,) = sink.dead
    assert dead.reason == "processing failed (event 'bad-1'): ValueError: filter cannot handle this value"
    p.router = p.admission.router = Router([Route("all", "out")])  # the fix: a filter that does not raise
    src = InMemorySource([{"id": "bad-1"}])
    await drain(p, src)
    assert [d.event.id for d in sink.routed] == ["ok-1", "ok-2", "bad-1"] and src.all_acked_once
    assert not p.metrics.registry.get_sample_value("bridge_duplicates_dropped_total", {"source": "memory"})


async def test_an_exception_while_encoding_dead_letters_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder failure for one event dead-letters it; the others are published."""
    sink = CapturingSink()
    p = pipeline(sink)
    real = p.encoder.encode

    def encode(event: CloudEvent) -> tuple[bytes, bytes]:
        if event.id == "x":
            raise OverflowError("cannot encode")
        return real(event)

    monkeypatch.setattr(p.admission, "encoder", type("E", (), {"encode": staticmethod(encode),
                                                              "dead_letter": p.encoder.dead_letter})())
    src = InMemorySource([{"id": "w"}, {"id": "x"}, {"id": "y"}])
    await drain(p, src)
    assert [d.event.id for d in sink.routed] == ["w", "y"]
    assert [d.reason for d in sink.dead] == ["processing failed (event 'x'): OverflowError: cannot encode"]
    assert src.all_acked_once


async def test_a_poison_message_in_every_batch_never_stops_the_stream() -> None:
    """Poison messages spread over many batches: every good message is published and every batch acked."""
    sink = CapturingSink()
    bodies: list[dict[str, object]] = []
    for i in range(300):
        bodies.append({"id": f"g{i}", "subject": f"s{i % 7}"})
        if i % 10 == 0:
            bodies.append({"id": f"p{i}", "poison": True})
    src = InMemorySource(bodies, batch_size=25)
    p = pipeline(sink)
    await asyncio.wait_for(drain(p, src), 10)
    assert sorted(d.event.id for d in sink.routed) == sorted(f"g{i}" for i in range(300))
    assert len(sink.dead) == 30 and src.all_acked_once


def test_replay_keeps_the_good_lines_around_a_poison_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """`bridge replay` with a line whose normalization raises writes that line as a dead letter, the other lines
    as events, and exits 0."""
    from bridge.cli import main
    from bridge.testing.events import sagemaker_training_event
    from tests.poison import poison_normalizer

    poison_normalizer(monkeypatch, b"poison", KeyError("unexpected"))
    lines = [orjson.dumps(sagemaker_training_event("e1", "j1", 1)), b'{"poison": 1}',
             orjson.dumps(sagemaker_training_event("e2", "j2", 2))]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["replay", "--input", str(src), "--output", str(out)]) == 0
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert sorted(r["event"]["id"] for r in rows if r["route"] == "all") == ["e1", "e2"]
    assert [r["error"] for r in rows if r["route"] == "deadletter"] == ["normalize failed: KeyError: 'unexpected'"]
