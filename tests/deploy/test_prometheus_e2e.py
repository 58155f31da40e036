"""A real Prometheus (Debian's 2.42 package) scrapes a running `bridge run` on the test Kafka broker: every
dashboard query returns data and names only metrics /metrics exports, the alert rules evaluate without error and
stay silent on a healthy bridge, a restart shows on the restarts panel, and the stall alert fires while the sink
broker is paused (SIGSTOP) and clears once it resumes.

The rules are the shipped ones with every duration divided by ``COMPRESS`` (a 5-minute window becomes 5 s) and
Prometheus scrapes and evaluates every second; the PromQL is otherwise unchanged (promtool's unit tests cover
the real durations).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from bridge.testing.events import sagemaker_training_event
from testbed.apache_kafka import ApacheKafka
from testbed.kafka import collect, produce
from testbed.process import BridgeProcess
from testbed.prometheus import (
    Prometheus,
    compress_durations,
    dashboard_targets,
    exported_sample_names,
    metric_names,
    substitute,
)
from testbed.waiting import ConditionNotReached, wait_for

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
DASHBOARD = OBS / "grafana" / "ml-event-bridge.json"
COMPRESS = 60
RATE_INTERVAL = "10s"  # what $__rate_interval stands for at a 1 s scrape interval (10 scrapes)
STALL = "BridgePipelineStalled"
TRUSTED_ACCOUNT = "123456789012"  # sagemaker_training_event's default account
FOREIGN_ACCOUNT = "999999999999"
READINESS = "Readiness: pods, sources, brokers"
# (panel, legend) of the queries whose value the traffic below makes positive; the others may read 0 (lag, errors,
# early flushes, restarts before the restart).
MEASURED = {
    ("Sources ready", "ready"), ("Sources ready", "configured"), ("Events out / s", "events out"),
    ("Messages and events in per source", "{{source}} messages"),
    ("Messages and events in per source", "{{source}} events"), ("Events out per route", "{{route}}"),
    ("Duplicates dropped per source", "{{source}}"), ("Unrouted per source", "{{source}}"),
    ("Dead letters by kind", "{{kind}}"), ("Late events by policy", "{{policy}}"),
    ("Untrusted events per source", "{{source}}"),
    *((READINESS, legend) for legend in ("{{pod}} ready", "{{pod}} {{source}}", "{{pod}} broker {{client}}")),
    ("Source positions released and failed", "{{source}} released"),
    ("Memory and dedup window", "{{pod}} resident"), ("Memory and dedup window", "{{pod}} dedup ids"),
    ("Memory and dedup window", "{{pod}} memory limit"), ("Held bytes against the memory budget", "{{pod}} budget"),
    *(("Publish latency", f"p{q}") for q in (50, 90, 99)), *(("End-to-end latency", f"p{q}") for q in (50, 90, 99)),
}

T = TypeVar("T")


async def eventually(probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str) -> T:
    """Call ``probe`` (blocking, run in a thread) every 0.5 s until ``ok`` holds; fail with the last value."""
    last: list[T] = []

    async def holds() -> bool:
        last[:] = [await asyncio.to_thread(probe)]
        return ok(last[0])

    try:
        await wait_for(holds, within=timeout, every=0.5)
    except ConditionNotReached:
        pytest.fail(f"{what} within {timeout}s; last: {last[0]!r}")
    return last[0]


def prometheus_for(bridge_port: int, workdir: Path) -> Prometheus:
    """Prometheus on the compose config (job, labels) pointed at the bridge, with the time-compressed rules."""
    rules = compress_durations(yaml.safe_load((OBS / "alerts.yml").read_text()), COMPRESS)
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = workdir / "alerts.yml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    config = yaml.safe_load((OBS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules_path)]
    [job] = config["scrape_configs"]
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{bridge_port}"]
    return Prometheus(config, log_dir=workdir)


def bridge_config(source_bootstrap: str, raw: str, sink_bootstrap: str, routes: list[dict[str, Any]],
                  dead: str, group: str) -> dict[str, Any]:
    return {
        "log": {"level": "info"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": source_bootstrap, "topics": [raw],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "dedup": {"enabled": True},
        "reorder": {"enabled": True, "max_delay_ms": 300, "late_policy": "emit"},
        "routes": routes,
        "deadletter": {"topic": dead},
        "sink": {"type": "kafka", "bootstrap_servers": sink_bootstrap},
        "shutdown": {"grace_seconds": 10},
        "trust": {"aws_accounts": [TRUSTED_ACCOUNT]},
        # the bridge's stall signal after 2 s without progress (default 60 s), like the compressed rules
        "readiness": {"stall_seconds": 2},
    }


@contextlib.asynccontextmanager
async def traffic(bootstrap: str, topic: str, prefix: str, every: float = 0.4, limit: float = 180.0,
                  faults: bool = False) -> AsyncIterator[list[int]]:
    """Produce a burst (a running and a completed event of a new job) every ``every`` seconds until the block
    exits (at most ``limit`` seconds); with ``faults`` each burst also repeats the completed event (a duplicate)
    and sends an event older than those already emitted for the job two bursts back (late), and every fifth
    burst a malformed message and an event from an untrusted account (dead letters, below the dead-letter alert's
    minimum count). Yields a one-element
    list with the count of messages sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    sent = [0]

    async def loop() -> None:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < limit:
            job = f"{prefix}{n}"
            bodies = [orjson.dumps(sagemaker_training_event(f"{job}-0", job, 100, "InProgress")),
                      orjson.dumps(sagemaker_training_event(f"{job}-1", job, 101, "Completed"))]
            if faults:
                bodies.append(bodies[-1])
                if n >= 2:
                    bodies.append(orjson.dumps(sagemaker_training_event(f"{prefix}{n - 2}-late", f"{prefix}{n - 2}",
                                                                         50)))
                if n % 5 == 0:
                    bodies.append(b"{not json")
                    bodies.append(orjson.dumps(sagemaker_training_event(f"{job}-foreign", f"{job}x", 100,
                                                                         account=FOREIGN_ACCOUNT)))
            for body in bodies:
                await producer.send_and_wait(topic, body, key=job.encode())
                sent[0] += 1
            n += 1
            await asyncio.sleep(every)

    task = asyncio.create_task(loop())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


def _labels(metric: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(metric.items())) + "}"


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


class NoValues(Exception):
    """A dashboard variable's query returned nothing (yet)."""


def dashboard_queries(prom: Prometheus, range_seconds: float) -> list[tuple[str, str, str]]:
    """(panel title, legend, query) for every dashboard target, with Grafana's variables as Grafana would fill
    them: namespace and pod "All" as the regex of the values their own variable queries return."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables: dict[str, str] = {"__rate_interval": RATE_INTERVAL, "__range": f"{math.ceil(range_seconds)}s"}
    for var in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*), (\w+)\)", var.get("query", "")) if var["type"] == "query" else None
        if m:
            values = prom.label_values(m.group(2), substitute(m.group(1), variables))
            if not values:
                raise NoValues(f"variable {var['name']}: {var['query']} returned nothing")
            variables[var["name"]] = "(" + "|".join(re.escape(v) for v in values) + ")"
    return [(panel["title"], target.get("legendFormat", ""), substitute(target["expr"], variables))
            for panel, target in dashboard_targets(dashboard)]


async def test_every_dashboard_query_returns_data_from_a_running_bridge(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Prometheus scraping `bridge run`: each panel query returns a finite value (> 0 for what the traffic causes)
    and names only exported metrics; every alert rule evaluates without error, untrusted events fire their alert
    and nothing else fires; a restart counts as one on the restarts panel."""
    raw, completed, failed, dead = (kafka_topic(n, p) for n, p in
                                    (("raw", 3), ("completed", 1), ("failed", 1), ("dead", 1)))
    routes = [
        {"name": "failed", "topic": failed, "filters": [{"pattern": {"status": ["failed"]}}]},
        {"name": "completed", "topic": completed, "filters": [{"pattern": {"status": ["completed"]}}]},
    ]  # running events match no route: unrouted
    cfg = bridge_config(kafka_bootstrap, raw, kafka_bootstrap, routes, dead, f"bridge-{raw}")
    events = [sagemaker_training_event(f"{j}-{s}", f"job{j}", 100 + s,
                                       ("Failed" if j % 3 == 0 else "Completed") if s == 4 else "InProgress")
              for j in range(10) for s in range(5)]
    bodies = [orjson.dumps(e) for e in events + events[:10]] + [b"{not json"]  # 10 duplicates, 1 invalid
    bridge = BridgeProcess(cfg, tmp_path / "bridge-1")
    bridge.start()
    prom: Prometheus | None = None
    restarted: BridgeProcess | None = None
    try:
        await asyncio.to_thread(bridge.wait_ready)
        prom = prometheus_for(bridge.port, tmp_path / "prometheus")
        await prom.astart()
        prom_started = time.monotonic()
        await produce(kafka_bootstrap, raw, bodies)
        async with traffic(kafka_bootstrap, raw, f"bg-{uuid.uuid4().hex[:6]}-", faults=True):
            await eventually(lambda: bridge.metric_sum("bridge_late_events_total"), lambda v: v >= 1, 60,
                             "events flowing, late ones included")
            exported = exported_sample_names((await asyncio.to_thread(bridge.get, "/metrics"))[1].decode())

            def all_panels() -> dict[tuple[str, str, str], list[dict[str, Any]]]:
                assert prom is not None
                try:
                    queries = dashboard_queries(prom, time.monotonic() - prom_started + 5)
                except NoValues as exc:
                    return {(str(exc), "", ""): []}
                return {q: prom.query(q[2]) for q in queries}

            def panels_and_gaps() -> tuple[list[str], dict[tuple[str, str, str], list[dict[str, Any]]]]:
                results = all_panels()
                positive = {(t, legend) for (t, legend, _), v in results.items() if max(finite_values(v) or [0]) > 0}
                gaps = [f"{t} [{legend}]: no finite value" for (t, legend, _), v in results.items()
                        if not finite_values(v)]
                gaps += [f"{t} [{legend}]: not > 0" for t, legend in sorted(MEASURED - positive)]
                return gaps, results

            _, results = await eventually(panels_and_gaps, lambda r: not r[0], 90,
                                          "every dashboard query returning a finite value, and > 0 where measured")
            for (title, _, expr), _result in results.items():
                unknown = metric_names(expr) - exported - {"up"}
                assert not unknown, f"{title}: {sorted(unknown)} not on the bridge's /metrics"
            rules = await asyncio.to_thread(prom.rules)
            assert {r["name"] for r in rules} >= {STALL, "BridgeSourceDown", "BridgeDown"}
            for rule in rules:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
            # the untrusted events sent above must raise their alert; nothing else fires on this healthy bridge
            alerts = await eventually(
                prom.alerts, lambda a: any(x["labels"]["alertname"] == "BridgeUntrustedEvents" and
                                           x["state"] == "firing" for x in a), 30, "BridgeUntrustedEvents firing")
            firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
            assert firing == {"BridgeUntrustedEvents"}, alerts

            bridge.terminate()
            restarted = BridgeProcess(cfg, tmp_path / "bridge-2", port=bridge.port)
            restarted.start()
            await asyncio.to_thread(restarted.wait_ready)

            def restarts() -> list[float]:
                assert prom is not None
                try:
                    queries = dashboard_queries(prom, time.monotonic() - prom_started + 5)
                except NoValues:  # no scrape yet since the restart
                    return []
                [(_, _, expr)] = [q for q in queries if "process_start_time_seconds" in q[2]]
                return finite_values(prom.query(expr))

            restart_count = await eventually(restarts, lambda v: v == [1.0], 60,
                                             "the restart counted once on the restarts panel")
        print("\ndashboard queries and what each returned (before the restart):")
        for (title, legend, expr), result in results.items():
            shown = ", ".join(f"{_labels(r['metric'])}={float(r['value'][1]):.6g}" for r in result[:4])
            print(f"- {title} [{legend}]: {expr}\n    -> {shown}{' ...' if len(result) > 4 else ''}")
        print(f"restarts panel after one restart: {restart_count}")
        assert restarted.terminate() == 0, restarted.log_tail()
    finally:
        for proc in (bridge, restarted):
            if proc is not None and proc.proc is not None and proc.proc.poll() is None:
                proc.kill()
        if prom is not None:
            await prom.astop()


async def test_stall_alert_fires_while_the_sink_broker_is_paused(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Healthy traffic for longer than the stall alert's window and `for` fires no alert; with the sink broker
    SIGSTOPped and events pending the stall alert fires; after SIGCONT every event is delivered and it clears."""
    raw = kafka_topic("raw", 3)
    sink = ApacheKafka(log_dir=tmp_path / "sink-kafka")
    sink.start()
    prom: Prometheus | None = None
    stopped = False
    try:
        out, dead = sink.create_topic("out", 1), sink.create_topic("dead", 1)
        cfg = bridge_config(kafka_bootstrap, raw, sink.bootstrap, [{"name": "all", "topic": out}], dead,
                            f"bridge-{raw}")
        with BridgeProcess(cfg, tmp_path / "bridge") as bridge:
            await asyncio.to_thread(bridge.wait_ready)
            prom = prometheus_for(bridge.port, tmp_path / "prometheus")
            await prom.astart()
            stall_window = 2 * 300 / COMPRESS  # the rule's 5-minute window plus its 5-minute `for`, compressed
            async with traffic(kafka_bootstrap, raw, "healthy-") as sent:
                healthy_until = time.monotonic() + stall_window + 4
                while time.monotonic() < healthy_until:
                    firing = [a for a in await asyncio.to_thread(prom.alerts) if a["state"] == "firing"]
                    assert not firing, f"alerts firing on a healthy bridge: {firing}"
                    await asyncio.sleep(1)
            healthy = sent[0]
            await eventually(lambda: bridge.metric_sum("bridge_events_out_total"), lambda v: v >= healthy, 60,
                             "the healthy traffic delivered")
            assert (await asyncio.to_thread(prom.query, 'up{job="ml-event-bridge"}'))[0]["value"][1] == "1"

            assert sink.pid is not None
            os.kill(sink.pid, signal.SIGSTOP)
            stopped = True
            paused_at = time.monotonic()
            stuck = [orjson.dumps(sagemaker_training_event(f"stuck-{i}", f"stuck{i}", 100, "Completed"))
                     for i in range(20)]
            await produce(kafka_bootstrap, raw, stuck)
            alerts = await eventually(
                prom.alerts, lambda a: any(x["labels"]["alertname"] == STALL and x["state"] == "firing" for x in a),
                90, f"{STALL} firing while the sink is paused")
            fired_after = time.monotonic() - paused_at
            [alert] = [a for a in alerts if a["labels"]["alertname"] == STALL]
            assert alert["labels"]["severity"] == "critical" and alert["labels"]["job"] == "ml-event-bridge"
            assert float(alert["value"]) > 0
            assert alert["annotations"]["runbook_url"] == "docs/operations.md#bridgepipelinestalled"
            print(f"\n{STALL} fired {fired_after:.1f}s after the sink was paused: value {alert['value']}, "
                  f"labels {alert['labels']}")

            os.kill(sink.pid, signal.SIGCONT)
            stopped = False
            await eventually(lambda: bridge.metric_sum("bridge_events_out_total"),
                             lambda v: v >= healthy + len(stuck), 90, "the held events delivered after SIGCONT")
            await eventually(prom.alerts, lambda a: not any(x["labels"]["alertname"] == STALL for x in a), 60,
                             f"{STALL} cleared after the sink resumed")
            records = await collect(sink.bootstrap, [out], until=healthy + len(stuck), timeout=30)
            assert {r.event["id"] for r in records if r.event} >= {f"stuck-{i}" for i in range(20)}
            assert bridge.terminate() == 0, bridge.log_tail()
    finally:
        if stopped and sink.pid is not None:
            os.kill(sink.pid, signal.SIGCONT)
        if prom is not None:
            await prom.astop()
        sink.stop()


def test_time_compression_keeps_expressions_and_scales_every_duration() -> None:
    """compress_durations divides `for` and every range selector and leaves the rest of each rule as shipped."""
    rules = yaml.safe_load((OBS / "alerts.yml").read_text())
    fast = compress_durations(rules, COMPRESS)
    for slow_rule, fast_rule in zip(rules["groups"][0]["rules"], fast["groups"][0]["rules"], strict=True):
        assert re.sub(r"\[\w+\]", "[]", slow_rule["expr"]) == re.sub(r"\[\w+\]", "[]", fast_rule["expr"])
        assert {k: v for k, v in slow_rule.items() if k not in ("expr", "for")} == \
            {k: v for k, v in fast_rule.items() if k not in ("expr", "for")}
    by_name = {r["alert"]: r for r in fast["groups"][0]["rules"]}
    assert by_name[STALL]["for"] == "5s"
    lag = by_name["BridgeConsumerLagGrowing"]
    assert lag["for"] == "15s" and lag["expr"].count("[15s]") == 2 and "[15m]" not in lag["expr"]

