"""The state topic on the test broker (tansu): created log-compacted when missing, checked when it exists."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient

from bridge.kafka_common import KafkaClientSettings
from bridge.state.config import StateConfig
from bridge.state.topic import _cleanup_policy, ensure_state_topic


async def test_missing_state_topic_is_created_compacted_and_then_found_so(kafka_bootstrap: str) -> None:
    """A missing state topic is created with cleanup.policy=compact and the configured partitions; the next
    start finds it compacted."""
    settings = KafkaClientSettings(bootstrap_servers=kafka_bootstrap)
    topic = f"state-{uuid.uuid4().hex[:8]}"
    state = StateConfig(topic=topic, partitions=2)
    assert await ensure_state_topic(settings, state) == "created"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert await _cleanup_policy(admin, topic) == "compact"
        [described] = await admin.describe_topics([topic])
        assert len(described["partitions"]) == 2
    finally:
        await admin.close()
    assert await ensure_state_topic(settings, state) == "compacted"


async def test_existing_topic_that_is_not_compacted_or_missing_topic_is_reported(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """A state topic created without compaction is reported (the bridge goes on); with create_topic off a
    missing one is reported, not created."""
    settings = KafkaClientSettings(bootstrap_servers=kafka_bootstrap)
    plain = kafka_topic("plain", 1)
    assert (await ensure_state_topic(settings, StateConfig(topic=plain))).startswith("not compacted")
    missing = f"state-{uuid.uuid4().hex[:8]}"
    assert await ensure_state_topic(settings, StateConfig(topic=missing, create_topic=False)) == "missing"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()
