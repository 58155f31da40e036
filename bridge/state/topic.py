"""The state topic must be log-compacted: created so at start when missing, checked when it exists.

Kafka keeps the latest record per key of a compacted topic (``cleanup.policy=compact``): a consumer reading it
from the start gets one current record per subject. ``ensure_state_topic`` runs once before the first publish
(a broker with ``auto.create.topics.enable`` would otherwise create it on first use, *not* compacted). It lists
the topics (a metadata request for all topics never auto-creates one); a missing topic is created with
``cleanup.policy=compact`` and the ``state.topic_config`` settings (how soon Kafka compacts it),
``state.partitions`` partitions and ``state.replication_factor`` replicas (unset: min(3, brokers); aiokafka's
CreateTopics goes up to version 3, which has no "broker default" replication); an
existing one has its ``cleanup.policy`` read (DescribeConfigs) and a warning is logged when it is not compact.
Nothing here stops the bridge: without CREATE or DESCRIBE_CONFIGS permission it logs what to do and goes on.

Those who create the topic themselves::

    kafka-topics.sh --create --topic ml.state --partitions 3 --replication-factor 3 \\
        --config cleanup.policy=compact --bootstrap-server BROKER
"""

from __future__ import annotations

from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bridge.kafka_common import KafkaClientSettings
from bridge.model import Sink
from bridge.state.config import StateConfig

log = structlog.get_logger("bridge.state")

_TOPIC_ALREADY_EXISTS = 36


def _admin(settings: KafkaClientSettings) -> AIOKafkaAdminClient:
    kwargs = settings.client_kwargs()
    kwargs.pop("client_id", None)
    return AIOKafkaAdminClient(client_id=f"{settings.client_id}-admin", **kwargs)


async def _cleanup_policy(admin: AIOKafkaAdminClient, topic: str) -> str | None:
    responses: list[Any] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    for response in responses:
        for resource in response.resources:
            error_code, error_message = resource[0], resource[1]
            if error_code:
                raise RuntimeError(f"DescribeConfigs {topic}: error {error_code} {error_message or ''}".strip())
            for entry in resource[4]:
                if entry[0] == "cleanup.policy":
                    return str(entry[1])
    return None


async def prepare_state_topic(sink: Sink, state: StateConfig) -> str:
    """``ensure_state_topic`` with the sink's Kafka connection; a sink that is not Kafka (the JSON Lines sink, a
    test double) has no topic to prepare."""
    from bridge.sinks.kafka import KafkaSink

    if not isinstance(sink, KafkaSink):
        return "not a Kafka sink"
    return await ensure_state_topic(sink.config, state)


async def ensure_state_topic(settings: KafkaClientSettings, state: StateConfig) -> str:
    """Create or check the state topic (see the module docstring); returns what was found or done, for logs
    and tests: ``created``, ``compacted``, ``not compacted: <policy>``, ``missing`` or ``unchecked: <error>``."""
    topic = state.topic
    if topic is None:
        return "no state topic"
    admin = _admin(settings)
    try:
        await admin.start()
        if topic not in await admin.list_topics():
            if not state.create_topic:
                log.warning("state.topic_missing", topic=topic, detail="create it log-compacted",
                            hint="cleanup.policy=compact (state.create_topic is off)")
                return "missing"
            brokers = len((await admin.describe_cluster()).get("brokers", [])) or 1
            replicas = state.replication_factor or min(3, brokers)
            response: Any = await admin.create_topics(
                [NewTopic(topic, state.partitions, replicas, topic_configs=state.topic_configs())]
            )
            for _, code, message in response.topic_errors:
                if code and code != _TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"CreateTopics {topic}: error {code} {message or ''}".strip())
            log.info("state.topic_created", topic=topic, partitions=state.partitions, replication_factor=replicas,
                     configs=state.topic_configs())
            return "created"
        policy = await _cleanup_policy(admin, topic)
        if policy is None or "compact" not in policy.split(","):
            log.warning("state.topic_not_compacted", detail="it keeps every state, not the latest per subject",
                        topic=topic, cleanup_policy=policy,
                        hint=f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
                        "--add-config cleanup.policy=compact")
            return f"not compacted: {policy}"
        return "compacted"
    except Exception as exc:
        log.warning("state.topic_not_checked", topic=topic, error=f"{type(exc).__name__}: {exc}",
                    hint="make sure it exists with cleanup.policy=compact")
        return f"unchecked: {type(exc).__name__}: {exc}"
    finally:
        await admin.close()
