"""Per-stage cost of the bridge's own work, without brokers: ``python -m bench.stages``.

Takes the bench's generated input (``bench.data.generate``) through each stage of the pipeline separately, in one
process with the cyclic garbage collector off, and prints microseconds per input record for each: the floor of
JSON parsing (``orjson.loads``), ``jsonutil.loads``, ``normalize_all``, routing, encoding at admission, the whole
admission stage (normalize, dedup, route, encode, records), reorder push and drain, the sink's record building at
delivery, aiokafka's ``BatchBuilder.append`` of the encoded records, and the whole pipeline from ``submit`` to
settled and acked (delivery with the after-confirm steps, on an in-memory sink), also with a ``changes_only`` route
and a state topic (plan and settle of ``bridge.state``). It also compares the filter dialects on the canonical
events: a three-clause CESQL expression against the equivalent EventBridge pattern (best of five runs each, per
event; both must give the same answer on every event). The config is the bench's
(``bench.bridge_proc.bench_config``). What the Kafka clients and the event loop cost on top is what
``python -m bench.run`` adds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka.producer.message_accumulator import BatchBuilder

from bench.bridge_proc import Topics, bench_config
from bench.data import generate
from bridge import jsonutil
from bridge.app import build_pipeline, build_router
from bridge.config import BridgeConfig, parse_config
from bridge.filters import compile_filter
from bridge.logs import configure
from bridge.model import OutRecord, RawMessage, SourceBatch
from bridge.normalize import normalize_all
from bridge.pipeline.admission import Admitted
from bridge.pipeline.records import Record
from bridge.sinks.encoding import BinaryEncoder
from bridge.testing.memory import CapturingSink

# The same selection in two dialects: failed jobs of either cloud.
EVENTBRIDGE_3: dict[str, Any] = {"type": ["ml.job.status_changed"], "status": ["failed"],
                                 "platform": ["azureml", "sagemaker"]}
CESQL_3 = "type = 'ml.job.status_changed' AND status = 'failed' AND platform IN ('azureml', 'sagemaker')"
FILTER_LABELS = {"eventbridge": "filter: EventBridge pattern, 3 fields", "cesql": "filter: CESQL, 3 clauses"}


def _filters(results: dict[str, float], docs: list[dict[str, Any]], runs: int = 5) -> None:
    """Per-event cost of each dialect's ``matches`` on the canonical dicts, best of ``runs``."""
    answers: dict[str, list[bool]] = {}
    for dialect, spec in (("eventbridge", EVENTBRIDGE_3), ("cesql", {"cesql": CESQL_3})):
        matches = compile_filter(spec, dialect).matches
        best = float("inf")
        for _ in range(runs):
            t0 = time.perf_counter()
            answers[dialect] = [matches(d) for d in docs]
            best = min(best, time.perf_counter() - t0)
        results[FILTER_LABELS[dialect]] = round(best * 1e6 / len(docs), 3)
    if answers["eventbridge"] != answers["cesql"]:
        raise AssertionError("the CESQL filter and the EventBridge pattern disagree on some events")


def _raw_config() -> dict[str, Any]:
    """The benchmark's bridge config as a dict (no broker is reached: the stages run in this process)."""
    return bench_config("127.0.0.1:9", Topics("b.in", "b.jobs", "b.models", "b.dl"), "g", 0, idempotent=True)


def _config() -> BridgeConfig:
    return parse_config(_raw_config(), env={})


def _timed(results: dict[str, float], label: str, n: int, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    value = fn()
    results[label] = round((time.perf_counter() - t0) * 1e6 / n, 2)
    return value


async def _pipeline_stages(msgs: list[RawMessage], results: dict[str, float], batch: int) -> None:
    cfg = _config()
    pipeline = build_pipeline(cfg, CapturingSink())
    n = len(msgs)
    batches = [SourceBatch(msgs[i : i + batch], source="bench") for i in range(0, n, batch)]
    admitted: list[Admitted] = []
    t0 = time.perf_counter()
    for b in batches:
        admitted.append(await pipeline.admission.admit(b, pipeline.settlement.track(b, 0.0)))
    results["admission (normalize, dedup, route, encode, records)"] = round((time.perf_counter() - t0) * 1e6 / n, 2)
    reorder = pipeline.reorder
    assert reorder is not None
    t0 = time.perf_counter()
    released: list[Any] = []
    for a in admitted:
        released += reorder.push(a.records, 0.0)[0]
    released += reorder.drain()
    results["reorder push and drain"] = round((time.perf_counter() - t0) * 1e6 / n, 2)
    records = [r for a in admitted for r in a.records if r.routes]
    enc = pipeline.encoder

    def build(recs: list[Record]) -> list[OutRecord]:
        return [enc.record(r.routes[0].name, r.routes[0].topic, r) for r in recs]

    out: list[OutRecord] = _timed(results, "records for the sink (key, CloudEvents headers)", n, lambda: build(records))

    def append() -> None:
        builder = BatchBuilder(1 << 30, 0)
        for o in out:
            builder.append(timestamp=None, key=o.key, value=o.value, headers=o.headers)

    _timed(results, "aiokafka BatchBuilder.append", n, append)


async def _whole_pipeline(msgs: list[RawMessage], results: dict[str, float], batch: int, label: str,
                          state: bool) -> None:
    """``submit`` of every batch, then ``flush``: admission, ordering, delivery to an in-memory sink and the
    after-confirm steps (settle, release, ack), per input record."""
    raw = _raw_config()
    if state:
        raw["routes"].append({"name": "transitions", "topic": "b.transitions", "changes_only": True})
        raw["state"] = {"topic": "b.state"}
    pipeline = build_pipeline(parse_config(raw, env={}), CapturingSink())
    acked = 0

    async def ack() -> None:
        nonlocal acked
        acked += 1

    batches = [SourceBatch(msgs[i : i + batch], ack, "bench") for i in range(0, len(msgs), batch)]
    t0 = time.perf_counter()
    for b in batches:
        await pipeline.submit(b)
    await pipeline.flush()
    results[label] = round((time.perf_counter() - t0) * 1e6 / len(msgs), 2)
    await pipeline.close(1.0)
    assert acked == len(batches), f"{acked} of {len(batches)} batches acked"


def measure(events: int = 100_000, batch: int = 1000) -> dict[str, float]:
    data = generate(events)
    msgs = [RawMessage(v, source="bench", position=f"b.in/0@{i}") for i, (_, v) in enumerate(data.records)]
    valid = [m for m, i in zip(msgs, data.ids, strict=True) if i is not None]
    results: dict[str, float] = {}
    gc.collect()
    gc.disable()
    try:
        # parsing is timed on the valid records (orjson raises on the malformed ones); per record of the input
        _timed(results, "orjson.loads (the floor of parsing)", len(valid),
               lambda: [orjson.loads(m.body) for m in valid])
        _timed(results, "jsonutil.loads", len(valid), lambda: [jsonutil.loads(m.body) for m in valid])
        parsed = _timed(results, "normalize_all (parse and shape)", events, lambda: [normalize_all(m) for m in msgs])
        cloud_events = [e for evs, _ in parsed for e in evs]
        cfg = _config()
        router = build_router(cfg)
        _timed(results, "route (two filters)", events, lambda: [router.match(e) for e in cloud_events])
        _filters(results, [e.to_dict() for e in cloud_events])
        encoder = BinaryEncoder()
        _timed(results, "encode at admission", events, lambda: [encoder.encode(e) for e in cloud_events])
        parsed.clear()
        cloud_events.clear()
        asyncio.run(_pipeline_stages(msgs, results, batch))
        asyncio.run(_whole_pipeline(msgs, results, batch, "whole pipeline, submit to acked (in-memory sink)", False))
        asyncio.run(_whole_pipeline(msgs, results, batch, "the same with changes_only and a state topic", True))
    finally:
        gc.enable()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=1000, help="messages per source batch (the Kafka source's default)")
    args = p.parse_args(argv)
    configure("error", "json")  # the input's dead letters are logged as warnings
    results = measure(args.events, args.batch)
    width = max(len(k) for k in results)
    for label, us in results.items():
        print(f"{label:<{width}}  {us:7.3f} us/record")
    print(orjson.dumps({"events": args.events, "us_per_record": results}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
