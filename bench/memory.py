"""Memory: RSS readers, and the memory-scaling measurement run in a fresh process.

``python -m bench.memory [--ids 1000000] [--subjects 100000] [--events 200000]`` prints one JSON line:

- ``dedup``: RSS growth of a ``MemoryDedupStore`` holding ``--ids`` realistic (source, uuid) keys (recorded in
  batches of 1,000 as the pipeline does; the key tuples themselves are freed, the store keeps what it keeps);
- ``reorder``: RSS growth of a ``ReorderBuffer`` holding ``--events`` events across ``--subjects`` subjects,
  admitted as the pipeline admits them (normalized, routed, encoded once into compact records; the parsed
  events are gone), with the dedup stage's in-flight bookkeeping: the records, then the buffer's own
  structures, and in total per held event; beside it the bytes the memory budget accounts per record.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import uuid
from typing import Any

import orjson


def _status_kb(field: str, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size in MiB."""
    return _status_kb("VmRSS", pid) / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (VmHWM) in MiB."""
    return _status_kb("VmHWM", pid) / 1024


def _settled_rss() -> float:
    gc.collect()
    return rss_mb()


def measure_dedup(ids: int, batch: int = 1000, seed: int = 7) -> dict[str, Any]:
    from bridge.pipeline.dedup import MemoryDedupStore

    rng = random.Random(seed)
    sources = [f"aws.sagemaker/us-east-1/{rng.randrange(10**12):012d}" for _ in range(4)] + [
        "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/ml/providers/"
        f"Microsoft.MachineLearningServices/workspaces/ws{i}" for i in range(4)
    ]
    store = MemoryDedupStore(window_seconds=3600.0, max_entries=ids)
    before = _settled_rss()
    t0 = time.perf_counter()
    for start in range(0, ids, batch):
        keys = [(sources[i % len(sources)], str(uuid.UUID(int=rng.getrandbits(128), version=4)))
                for i in range(start, min(ids, start + batch))]
        store.record_now(keys)
    seconds = time.perf_counter() - t0
    after = _settled_rss()
    probe = [(sources[0], str(uuid.uuid4())) for _ in range(1000)]
    t1 = time.perf_counter()
    store.seen_now(probe)
    lookup_us = (time.perf_counter() - t1) / len(probe) * 1e6
    return {
        "ids": len(store),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "delta_mb": round(after - before, 1),
        "bytes_per_id": round((after - before) * 1024 * 1024 / max(1, len(store)), 1),
        "fill_seconds": round(seconds, 2),
        "lookup_us_per_key": round(lookup_us, 3),
    }


def _admit(bodies: list[bytes]) -> tuple[list[Any], Any]:
    """Admit the bodies as the pipeline does (normalize, dedup, route, encode in binary mode); return the
    records and the deduplicator (its in-flight bookkeeping is part of what a held event costs)."""
    import asyncio

    from bridge.metrics import Metrics
    from bridge.model import RawMessage, SourceBatch
    from bridge.pipeline.admission import Admission
    from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
    from bridge.pipeline.router import Route, Router
    from bridge.pipeline.settlement import Settlement
    from bridge.sinks.encoding import BinaryEncoder

    dedup = Deduplicator(MemoryDedupStore())
    metrics = Metrics()
    settlement = Settlement(dedup, metrics)
    admission = Admission(Router([Route("all", "ml.events")]), BinaryEncoder(), settlement, metrics,
                          deadletter_topic="dlq", dedup=dedup)

    async def run() -> list[Any]:
        records: list[Any] = []
        for start in range(0, len(bodies), 1000):
            chunk = bodies[start : start + 1000]
            msgs = [RawMessage(b, {}, "bench", f"bench/0@{start + i}") for i, b in enumerate(chunk)]
            batch = SourceBatch(msgs, None, "bench")
            records.extend((await admission.admit(batch, settlement.track(batch, 0.0))).records)
        return records

    return asyncio.run(run()), dedup


def measure_reorder(events: int, subjects: int) -> dict[str, Any]:
    from bench.data import generate
    from bridge.pipeline.reorder import ReorderBuffer

    ds = generate(events, subjects=subjects, dup_ratio=0.0, ooo_ratio=0.0, bad_ratio=0.0)
    bodies = [v for _, v in ds.records]
    input_bytes = sum(len(b) for b in bodies)
    del ds
    base = _settled_rss()  # the raw bodies exist already and are not held by the records
    records, dedup = _admit(bodies)
    with_records = _settled_rss()
    buf = ReorderBuffer(max_delay=3600.0, max_events=events, max_subjects=max(subjects, 1_000_000))
    t0 = time.perf_counter()
    for start in range(0, len(records), 1000):
        early, late = buf.push(records[start : start + 1000], 0.0)
        assert not early and not late
    seconds = time.perf_counter() - t0
    held = _settled_rss()
    n = max(1, buf.size)
    return {
        "events": buf.size,
        "subjects": buf.subjects,
        "input_bytes_per_event": round(input_bytes / n, 1),
        "records_and_dedup_mb": round(with_records - base, 1),
        "buffer_structures_mb": round(held - with_records, 1),
        "total_delta_mb": round(held - base, 1),
        "bytes_per_event_structures": round((held - with_records) * 1024 * 1024 / n, 1),
        "bytes_per_event_total": round((held - base) * 1024 * 1024 / n, 1),
        "accounted_bytes_per_event": round(buf.bytes / n, 1),
        "inflight_ids": dedup.inflight,
        "push_seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--subjects", type=int, default=100_000)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--only", choices=["dedup", "reorder"], default=None)
    a = p.parse_args(argv)
    out: dict[str, Any] = {"python_rss_mb": round(rss_mb(), 1)}
    if a.only in (None, "dedup"):
        out["dedup"] = measure_dedup(a.ids)
    if a.only in (None, "reorder"):
        out["reorder"] = measure_reorder(a.events, a.subjects)
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
