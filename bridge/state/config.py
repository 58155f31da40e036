"""Configuration of the ML lifecycle state: the current-state topic and how long last states are remembered.

The last state per (route, subject) of ``changes_only`` routes, and the last sequence per subject of the state
topic, live in the dedup store (``dedup.store``: memory, or Redis shared by replicas), with their own key
prefix and lifetime; they are kept whether or not ``dedup.enabled`` is on.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOPIC_PATTERN = r"^[A-Za-z0-9._-]+$"
_CONFIG_KEY = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
STATE_ROUTE = "state"
"""Route name of the state topic's records (metrics label, replay output)."""


class StateConfig(BaseModel):
    """``state:`` block of the bridge configuration."""

    model_config = ConfigDict(extra="forbid")

    topic: str | None = Field(
        None, min_length=1, max_length=249, pattern=TOPIC_PATTERN,
        description="log-compacted current-state topic: the latest event per subject (by sequence; a late event "
        "never overwrites a newer one), keyed by subject, routed or not; unset: no state topic",
    )
    create_topic: bool = Field(
        True, description="create the state topic with cleanup.policy=compact at start when it does not exist "
        "(Kafka admin API; needs CREATE permission); an existing topic is checked and a warning logged when it "
        "is not compacted",
    )
    partitions: int = Field(3, ge=1, description="partitions of the state topic when the bridge creates it")
    topic_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more topic configs of the state topic when the bridge creates it, e.g. {segment.ms: "
        "3600000, min.compaction.lag.ms: 0, min.cleanable.dirty.ratio: 0.1} (how soon Kafka compacts it: "
        "only rolled segments are compacted); cleanup.policy is compact and may only add delete",
    )
    replication_factor: int | None = Field(
        None, ge=1, description="replication factor of the state topic when the bridge creates it; unset: "
        "min(3, number of brokers)",
    )
    remember_seconds: float = Field(
        7 * 86400.0, gt=0,
        description="how long the last published state per (route, subject), the last sequence per subject and "
        "which dead letters were redriven are remembered (Redis key TTL; memory: also bounded by max_subjects). "
        "A subject whose state was forgotten publishes its next event as a change",
    )
    max_subjects: int = Field(
        100_000, ge=1,
        description="memory store: most (route or state topic, subject) entries remembered, least recently used "
        "forgotten first (about 250 bytes each, measured)",
    )
    key_prefix: str = Field("bridge:state:", description="prefix of the Redis keys (dedup.store redis)")

    @field_validator("topic_config")
    @classmethod
    def _topic_config(cls, value: dict[str, str | int | float | bool]) -> dict[str, str | int | float | bool]:
        for key, setting in value.items():
            if not _CONFIG_KEY.match(key):
                raise ValueError(f"{key!r} is not a topic config name (such as segment.ms)")
            if key == "cleanup.policy" and "compact" not in str(setting).replace(" ", "").split(","):
                raise ValueError(f"cleanup.policy {setting!r}: the state topic must stay compacted "
                                 "(compact, or compact,delete)")
        return value

    def topic_configs(self) -> dict[str, str]:
        """The configs the state topic is created with: ``cleanup.policy=compact`` and ``topic_config``, as
        Kafka's strings (``true``/``false`` for booleans)."""
        out = {"cleanup.policy": "compact"}
        for key, setting in self.topic_config.items():
            out[key] = str(setting).lower() if isinstance(setting, bool) else str(setting)
        return out
