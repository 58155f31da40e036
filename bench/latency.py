"""Latency at a fixed load: a paced producer feeds the bridge in real time, a consumer times its output.

The driver process sends the input at ``rate`` events/s (one small batch per partition every 5 ms, no
producer linger) and notes, per event id, the wall-clock time just before the batch holding it is handed to
the producer. It consumes the bridge's routed output topics concurrently and, per output record, takes
``receive time - send time`` (the id comes from the ``ce_id`` header; both clocks are this process's).
That end-to-end figure includes both Kafka hops, the bridge and the reorder hold. The reorder buffer holds
every event for ``max_delay`` (by design), so the run uses a small ``max_delay`` and reports
``added = end-to-end - max_delay`` separately from the hold. A second figure uses the output record's
timestamp (set by the bridge's producer when it appends the record) instead of the receive time: it excludes
the output hop and the consumer.

Apache Kafka answers a waiting fetch as soon as records arrive, so on it the latency run keeps the bridge's
default ``fetch_max_wait_ms`` (500 ms). tansu answers a fetch as soon as data is there when the request arrives,
but a fetch that found nothing waits the full ``fetch_max_wait_ms`` even if records arrive meanwhile (measured:
500 ms max wait gives 130 ms median delivery delay at 20 messages/s, 5 ms gives 2 ms). So on tansu the latency
run sets the source's ``fetch_max_wait_ms`` to 10 ms (``--latency-fetch-wait-ms``, for the bridge and the
pass-through alike); the throughput run, which never waits for data, keeps the default 500 ms on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.bridge_proc import BridgeProcess, Topics, baseline_command, bench_config, new_http_port
from bench.brokers import Broker
from bench.kafka import _partitions, producer, send_records

TICK = 0.005


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    out = {f"p{p:g}": round(s[min(len(s) - 1, int(len(s) * p / 100))], 2) for p in points}
    out["max"] = round(s[-1], 2)
    out["mean"] = round(sum(s) / len(s), 2)
    return out


class _Collector:
    """Consumes the output topics and records per-record latencies for known ids."""

    def __init__(self, bootstrap: str, topics: list[str], sent: dict[str, float], *,
                 ids_from_body: bool = False) -> None:
        self.bootstrap = bootstrap
        self.ids_from_body = ids_from_body  # pass-through output: the id is in the JSON body
        self.topics = topics
        self.sent = sent
        self.e2e_ms: list[float] = []
        self.bridge_ms: list[float] = []
        self.late = 0
        self.records = 0
        self.last_receive = time.perf_counter()
        self.warm_seen = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=5, max_partition_fetch_bytes=4 * 1024 * 1024,
                                    isolation_level="read_committed")  # what a consumer of the outputs sees
        await consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in sorted(await _partitions(consumer, t))]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        self._consumer = consumer

    async def run(self) -> None:
        assert self._consumer is not None
        consumer, sent = self._consumer, self.sent
        while True:
            got = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            if not got:
                continue
            self.last_receive = time.perf_counter()
            for records in got.values():
                for r in records:
                    self.records += 1
                    ev_id = late = None
                    if self.ids_from_body:
                        try:
                            ev_id = orjson.loads(r.value).get("id")
                        except (orjson.JSONDecodeError, AttributeError):
                            ev_id = None
                    for key, value in r.headers:
                        if key == "ce_id":
                            ev_id = value.decode()
                        elif key == "ce_late":
                            late = value
                    t_sent = sent.get(ev_id) if ev_id is not None else None
                    if t_sent is None:
                        self.warm_seen += 1
                        continue
                    if late == b"true":
                        self.late += 1
                    self.e2e_ms.append((now - t_sent) * 1000)
                    self.bridge_ms.append(r.timestamp - t_sent * 1000)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


async def _paced_send(broker: Broker, topic: str, partitions: int, records: list[tuple[bytes | None, bytes]],
                      ids: list[str | None], rate: float, sent: dict[str, float] | None) -> float:
    prod = producer(broker.bootstrap, idempotent=broker.idempotent, linger_ms=0)
    await prod.start()
    try:
        t0 = time.perf_counter()
        done = 0
        pending: list[asyncio.Future[Any]] = []
        while done < len(records):
            due = min(len(records), int((time.perf_counter() - t0) * rate) + 1)
            if due > done:
                if sent is not None:
                    now = time.time()
                    for ev_id in ids[done:due]:
                        if ev_id is not None and ev_id not in sent:
                            sent[ev_id] = now
                chunk = records[done:due]
                pending.extend(await send_records(prod, topic, chunk, partitions, start_index=done))
                done = due
                if len(pending) > 256:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.sleep(TICK)
        await asyncio.gather(*pending)
        return time.perf_counter() - t0
    finally:
        await prod.stop()


async def _measure(broker: Broker, source: str, partitions: int, records: list[tuple[bytes | None, bytes]],
                   ids: list[str | None], rate: float, collector: _Collector, warmup: int, settle: float,
                   idle_timeout: float) -> float:
    """Warm up (until half the warm-up records came out), then the paced, measured send; wait for the tail."""
    await collector.start()
    task = asyncio.create_task(collector.run())
    try:
        warm = records[:warmup]
        await _paced_send(broker, source, partitions, warm, ids[:warmup], rate, None)
        deadline = time.perf_counter() + 60
        while collector.warm_seen < len(warm) // 2 and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the group has joined and events flow
        await asyncio.sleep(settle)
        seconds = await _paced_send(broker, source, partitions, records[warmup:], ids[warmup:], rate,
                                    collector.sent)
        while time.perf_counter() - collector.last_receive < idle_timeout:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return seconds
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await collector.stop()


async def run_latency(broker: Broker, topics: Topics, partitions: int,
                      records: list[tuple[bytes | None, bytes]], ids: list[str | None], rate: float,
                      max_delay_ms: int, workdir: Path,
                      fetch_wait_ms: int = 500, prelude: str | None = None, sink_linger_ms: int | None = None,
                      group: str = "bench-latency", warmup: int = 2000,
                      idle_timeout: float = 3.0, delivery: dict[str, Any] | None = None,
                      name: str = "bridge-latency") -> dict[str, Any]:
    """Run the bridge with ``max_delay_ms``; send ``records`` at ``rate``/s then time the output (as a
    read_committed consumer sees it: with exactly_once, once its transaction committed)."""
    cfg = bench_config(broker.bootstrap, topics, group, new_http_port(), idempotent=broker.idempotent,
                       max_delay_ms=max_delay_ms, fetch_max_wait_ms=fetch_wait_ms, sink_linger_ms=sink_linger_ms,
                       delivery=delivery)
    bridge = BridgeProcess(cfg, workdir, name, prelude)
    collector = _Collector(broker.bootstrap, topics.routed, {})
    await asyncio.to_thread(bridge.start)
    try:
        seconds = await _measure(broker, topics.input, partitions, records, ids, rate, collector, warmup,
                                 max_delay_ms / 1000 + 0.5, idle_timeout)
        metrics = await asyncio.to_thread(bridge.metrics)
        _, peak = bridge.rss()
    finally:
        await asyncio.to_thread(bridge.stop)
    hold = float(max_delay_ms)
    e2e = collector.e2e_ms
    sent = len(records) - warmup
    return {
        "target_rate": round(rate),
        "achieved_send_rate": round(sent / seconds),
        "sent_records": sent,
        "measured_output_records": len(e2e),
        "late_records": collector.late,
        "reorder_max_delay_ms": max_delay_ms,
        "source_fetch_max_wait_ms": fetch_wait_ms,
        "end_to_end_ms": percentiles(e2e),
        "added_ms": percentiles([v - hold for v in e2e]),
        "to_bridge_output_ms": percentiles(collector.bridge_ms),
        "counters": {k.removeprefix("bridge_").removesuffix("_total"): v for k, v in metrics.items()
                     if k.endswith("_total") and k.startswith("bridge_")},
        "peak_rss_mb": round(peak, 1),
    }


async def run_latency_baseline(broker: Broker, source: str, target: str, partitions: int,
                               records: list[tuple[bytes | None, bytes]], ids: list[str | None], rate: float,
                               fetch_wait_ms: int = 500, group: str = "bench-latency-baseline",
                               warmup: int = 2000, idle_timeout: float = 3.0) -> dict[str, Any]:
    """The same paced load through the raw pass-through: the floor set by the broker and the machine."""
    cmd = [*baseline_command(broker, source, target, len(records), group), "--fetch-wait-ms", str(fetch_wait_ms)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    collector = _Collector(broker.bootstrap, [target], {}, ids_from_body=True)
    try:
        seconds = await _measure(broker, source, partitions, records, ids, rate, collector, warmup, 0.5,
                                 idle_timeout)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    sent = len(records) - warmup
    return {
        "target_rate": round(rate),
        "achieved_send_rate": round(sent / seconds),
        "sent_records": sent,
        "measured_output_records": len(collector.e2e_ms),
        "fetch_max_wait_ms": fetch_wait_ms,
        "end_to_end_ms": percentiles(collector.e2e_ms),
    }


async def run_latency_hop(broker: Broker, topic: str, partitions: int, records: list[tuple[bytes | None, bytes]],
                          ids: list[str | None], rate: float, warmup: int = 2000,
                          idle_timeout: float = 2.0) -> dict[str, Any]:
    """One hop, producer to consumer through the broker, at the same paced load: the broker's own floor."""
    collector = _Collector(broker.bootstrap, [topic], {}, ids_from_body=True)
    seconds = await _measure(broker, topic, partitions, records, ids, rate, collector, warmup, 0.5, idle_timeout)
    sent = len(records) - warmup
    return {
        "target_rate": round(rate),
        "achieved_send_rate": round(sent / seconds),
        "measured_records": len(collector.e2e_ms),
        "end_to_end_ms": percentiles(collector.e2e_ms),
        "send_to_record_timestamp_ms": percentiles(collector.bridge_ms),
    }
