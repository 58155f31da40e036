"""Event Hubs -> `bridge run` -> Kafka: the real azure-eventhub SDK against the AMQP test server, checkpoints
in azurite; duplicates dropped, order restored per subject, checkpoints written after delivery."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from bridge.sources.eventhubs import namespace_of
from bridge.testing.events import azureml_run_event
from testbed.kafka import collect
from testbed.process import BridgeProcess
from testbed.servers import RefusedPort
from testbed.waiting import wait_for_sync


async def test_event_grid_events_through_event_hubs_reach_kafka_once_and_in_order(
    eventhub: Callable[..., str], eventhubs_connection_string: Callable[[str], str], azurite_connection_string: str,
    checkpoint_container: Callable[[], str], kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path,
) -> None:
    """Event Grid events (single and array bodies, duplicated, shuffled) sent with the SDK producer come out
    on Kafka once each, in per-run order, the blob checkpoints cover every partition's last event, and
    /metrics reports the service-reported consumer lag of both partitions as 0."""
    hub = eventhub(partitions=2)
    container = checkpoint_container()
    out = kafka_topic("eh-out", 2)
    statuses = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
    events = [azureml_run_event(f"r{run}-{i}", f"run{run}", 10 + i, s) for run in range(6)
              for i, s in enumerate(statuses)]
    rng = random.Random(5)
    bodies = [orjson.dumps(e) for e in events] + [orjson.dumps(e) for e in rng.sample(events, 8)]
    bodies.append(orjson.dumps(events[:3]))  # an Event Grid array (all three already sent: duplicates)
    rng.shuffle(bodies)
    conn = eventhubs_connection_string(hub)
    producer = EventHubProducerClient.from_connection_string(conn)
    async with producer:
        for body in bodies:
            doc = orjson.loads(body)
            key = (doc[0] if isinstance(doc, list) else doc)["subject"]
            batch = await producer.create_batch(partition_key=key)
            batch.add(EventData(body))
            await producer.send_batch(batch)

    cfg: dict[str, Any] = {
        "sources": [{"type": "eventhubs", "name": "azure", "connection_string": conn, "eventhub_name": hub,
                     "checkpoint_store": {"connection_string": azurite_connection_string, "container": container},
                     "load_balancing_interval": 1.0}],
        "reorder": {"max_delay_ms": 1000},
        "routes": [{"name": "all", "topic": out}],
        "deadletter": {"topic": "eh-dead"},
        "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
    }
    with BridgeProcess(cfg, tmp_path) as bridge:
        bridge.wait_ready()
        recs = await collect(kafka_bootstrap, [out], until=len(events), timeout=60, settle=2.0)
        dups = bridge.metric_sum("bridge_duplicates_dropped_total")
        lag = bridge.wait_for_zero_lag("azure", {"0", "1"})
        assert bridge.terminate() == 0, bridge.log_tail()
    got = [r.event for r in recs if r.event]
    assert sorted(e["id"] for e in got) == sorted(e["id"] for e in events)
    assert dups == 8 + 3
    assert lag == {"0": 0.0, "1": 0.0}  # both partitions owned and fully received, per the service's metrics
    per_run: dict[str, list[str]] = defaultdict(list)
    for e in got:
        assert e["platform"] == "azureml" and e["type"] == "ml.job.status_changed"
        per_run[e["subject"]].append(e["data"]["runStatus"])
    assert all(v == statuses for v in per_run.values()), per_run
    namespace = namespace_of(conn)  # host:port, as the SDK keys checkpoints
    async with BlobCheckpointStore.from_connection_string(azurite_connection_string, container) as store:
        checkpoints = await store.list_checkpoints(namespace, hub, "$Default")
    # the last event of each partition is checkpointed: its sequence number is the partition's last one
    assert {c["partition_id"] for c in checkpoints} == {"0", "1"}, checkpoints
    total = sum(int(c["sequence_number"]) + 1 for c in checkpoints)
    assert total == len(bodies)  # sequence numbers start at 0: the checkpoints cover every message sent


async def test_an_unreachable_event_hubs_namespace_is_reported_in_readyz_and_the_logs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """An Event Hubs source whose namespace refuses connections: /readyz answers 503 naming the source's error
    and the log says so (health.broker_unreachable) within seconds, as for a Kafka source."""
    with RefusedPort() as port:
        conn = (f"Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=k;SharedAccessKey=a2V5;"
                "EntityPath=hub;UseDevelopmentEmulator=true")
        cfg: dict[str, Any] = {
            "sources": [{"type": "eventhubs", "name": "azure", "connection_string": conn}],
            "routes": [{"name": "all", "topic": "eh-unreachable-out"}],
            "deadletter": {"topic": "eh-unreachable-dead"},
            "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "readiness": {"probe_interval_seconds": 1, "probe_timeout_seconds": 3},
        }
        with BridgeProcess(cfg, tmp_path) as bridge:
            bridge.wait_http("/healthz")

            def reported() -> dict[str, Any] | None:
                code, body = bridge.get("/readyz", timeout=5)
                reasons = orjson.loads(body).get("reasons", [])
                logged = "health.broker_unreachable" in bridge.log_path.read_text(errors="replace")
                return {"reasons": reasons} if code == 503 and logged and any(
                    r.startswith("source azure: broker unreachable") for r in reasons) else None

            found = wait_for_sync(reported, within=30, every=0.5)
            assert found is not None, bridge.log_tail()
