"""Throughput phases: the raw pass-through baseline and the bridge, on the same pre-produced input.

Both run as separate processes that read a topic already holding every input record (produced before
timing). Both rates are measured the same way, from the broker: input records divided by the span between
the first and the last output record's timestamp (set by each process's producer when it appends the record).
For the bridge, that span starts when the first events leave the reorder buffer and ends when the last ones
do, so the reorder hold (``max_delay``, 2 s by default) shifts both ends and does not count; the wall time
from the first consumed record to the full commit (which includes that tail once) is reported too.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from bench import profile as pyspy
from bench.bridge_proc import BridgeProcess, Topics, baseline_command, bench_config, new_http_port
from bench.brokers import Broker
from bench.kafka import GroupOffsets, timestamp_span


async def run_baseline(broker: Broker, source: str, target: str, records: int,
                       group: str = "bench-baseline") -> dict[str, Any]:
    cmd = baseline_command(broker, source, target, records, group)
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"baseline failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    inner: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    span = await timestamp_span(broker.bootstrap, [target])
    return {
        "records": records,
        "output_records": span.records,
        "span_seconds": round(span.seconds, 3),
        "rate": records / span.seconds,
        "process_seconds": round(inner["seconds"], 3),
        "process_rate": inner["rate"],
        "peak_rss_mb": inner["peak_rss_mb"],
        "idempotent": inner["idempotent"],
    }


async def wait_committed(offsets: GroupOffsets, total: int, within: float,
                         bridge: BridgeProcess) -> float:
    """Poll the group's committed offsets until they cover ``total`` records; return that moment."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        committed = sum((await offsets.committed()).values())
        if committed >= total:
            return time.perf_counter()
        if bridge.proc is not None and bridge.proc.poll() is not None:
            raise RuntimeError(f"bridge died; log:\n{bridge.log_tail()}")
        await asyncio.sleep(0.1)
    committed_now = {f"{tp.topic}/{tp.partition}": off for tp, off in (await offsets.committed()).items()}
    try:
        gauges = {k: v for k, v in (await asyncio.to_thread(bridge.metrics)).items()
                  if k.startswith(("bridge_inflight", "bridge_reorder_buffer", "bridge_events_out",
                                   "bridge_consumer_lag", "bridge_batches_acked", "bridge_messages_in"))}
    except Exception as exc:  # the diagnosis must not hide the timeout
        gauges = {"metrics unavailable": repr(exc)}
    raise TimeoutError(f"bridge did not commit {total} records within {within}s; committed {committed_now}; "
                       f"bridge metrics {gauges}; log:\n{bridge.log_tail()}")


async def wait_first_input(bridge: BridgeProcess, within: float) -> float:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(lambda: bridge.metrics().get("bridge_messages_in_total", 0.0)) > 0:
            return time.perf_counter()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"bridge consumed nothing within {within}s; log:\n{bridge.log_tail()}")


async def run_bridge(broker: Broker, topics: Topics, records: int, workdir: Path, *,
                     profile: Path | None = None, prelude: str | None = None, name: str = "bridge-throughput",
                     group: str = "bench-throughput", within: float = 600.0,
                     delivery: dict[str, Any] | None = None, routes: int = 2) -> dict[str, Any]:
    """The full bridge over the pre-produced input topic; returns rates, counters and RSS. ``delivery``: the
    config's delivery section (exactly_once and its transaction sizes)."""
    cfg = bench_config(broker.bootstrap, topics, group, new_http_port(), idempotent=broker.idempotent,
                       delivery=delivery, routes=routes)
    bridge = BridgeProcess(cfg, workdir, name, prelude)
    spy = None
    offsets = GroupOffsets(broker.bootstrap, group, [topics.input])
    await offsets.start()
    try:
        t_start = time.perf_counter()
        await asyncio.to_thread(bridge.start)
        t_ready = time.perf_counter()
        if profile is not None:
            spy = pyspy.start(bridge.pid, profile)
        t_first = await wait_first_input(bridge, 60)
        t_done = await wait_committed(offsets, records, within, bridge)
        metrics = await asyncio.to_thread(bridge.metrics)
        rss_now, rss_peak = bridge.rss()
    finally:
        if spy is not None:
            await asyncio.to_thread(pyspy.stop, spy)
        await offsets.close()
        rc = await asyncio.to_thread(bridge.stop)
    exact = delivery is not None and delivery.get("guarantee") == "exactly_once"
    span = await timestamp_span(broker.bootstrap, topics.routed)
    per_topic = {t: (await timestamp_span(broker.bootstrap, [t], exact=exact)).records for t in topics.outputs}
    wall = t_done - t_first
    gcstats = None
    for line in bridge.log_path.read_text(errors="replace").splitlines():
        if line.startswith("bench-gcstats "):
            gcstats = orjson.loads(line.removeprefix("bench-gcstats "))
    return {
        "records": records,
        "span_seconds": round(span.seconds, 3),
        "rate": records / span.seconds,
        "wall_seconds_incl_reorder_tail": round(wall, 3),
        "wall_rate_incl_reorder_tail": records / wall,
        "startup_seconds": round(t_ready - t_start, 2),
        "output_records": per_topic,
        "counters": {k.removeprefix("bridge_").removesuffix("_total"): v for k, v in metrics.items()
                     if k.endswith("_total") and not k.startswith(("python_", "process_"))},
        "rss_mb_at_end": round(rss_now, 1),
        "peak_rss_mb": round(rss_peak, 1),
        "exit_code": rc,
        "sink_idempotent": cfg["sink"]["enable_idempotence"],
        **({"gcstats": gcstats} if gcstats else {}),
    }
