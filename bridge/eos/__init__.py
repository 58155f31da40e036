"""Exactly-once delivery from Kafka to Kafka (``delivery.guarantee: exactly_once``; docs/design.md, "Exactly once"):
transactional Kafka sources, one transactional producer per input partition, the changelog topic of the durable
state, and the coordinator the pipeline calls (``ExactlyOnce``, the pipeline's ``Transactions``)."""

from __future__ import annotations

from bridge.config import BridgeConfig
from bridge.eos.coordinator import ExactlyOnce
from bridge.limits import MemoryBudget
from bridge.metrics import Metrics
from bridge.model import Sink
from bridge.sinks.kafka import KafkaSink
from bridge.sources.kafka import KafkaSourceConfig
from bridge.sources.kafka_txn import TransactionalKafkaSource

__all__ = ["ExactlyOnce", "build_exactly_once"]


def build_exactly_once(cfg: BridgeConfig, sink: Sink, metrics: Metrics, budget: MemoryBudget | None,
                       prefetch_bytes: int | None) -> tuple[list[TransactionalKafkaSource], ExactlyOnce]:
    """The transactional sources of ``cfg`` (every one a Kafka source: the config refuses others) and their
    coordinator."""
    if not isinstance(sink, KafkaSink):
        raise TypeError(f"exactly_once delivery needs the Kafka sink, not {type(sink).__name__}")
    sources = []
    for s in cfg.sources:
        assert isinstance(s, KafkaSourceConfig)
        sources.append(TransactionalKafkaSource(s, budget=budget, prefetch_bytes=prefetch_bytes))
    d = cfg.delivery
    coordinator = ExactlyOnce(
        sources, sink, metrics, max_records=d.transaction_max_records, max_seconds=d.transaction_max_ms / 1000,
        transaction_timeout_ms=d.transaction_timeout_ms, dedup_window=cfg.dedup.window_seconds,
        changelog=d.changelog_topic,
    )
    return sources, coordinator
