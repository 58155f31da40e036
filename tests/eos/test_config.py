"""Configuration of exactly-once delivery: Kafka to Kafka only, dedup on, acks all; check-config says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, parse_config


def _kafka(name: str = "kafka") -> dict[str, object]:
    return {"type": "kafka", "name": name, "topics": ["in"]}


def test_exactly_once_is_off_by_default_and_its_transaction_settings_have_defaults() -> None:
    """The default guarantee stays at least once; exactly_once brings transaction size, age and timeout defaults."""
    cfg = parse_config({})
    assert cfg.delivery.guarantee == "at_least_once"
    eos = parse_config({"sources": [_kafka()], "delivery": {"guarantee": "exactly_once"}}).delivery
    assert eos.transaction_max_records > 0 and eos.transaction_max_ms > 0 and eos.transaction_timeout_ms >= 1000


@pytest.mark.parametrize("source", [
    {"type": "sqs", "name": "aws", "queue_url": "http://localhost/q"},
    {"type": "eventhubs", "name": "azure", "connection_string": "Endpoint=sb://x/;SharedAccessKeyName=k;"
     "SharedAccessKey=s", "eventhub_name": "h"},
])
def test_exactly_once_refuses_sources_that_cannot_commit_with_a_kafka_transaction(source: dict[str, str]) -> None:
    """An SQS or Event Hubs source beside exactly_once is a config error that names the source and says why."""
    with pytest.raises(ConfigError) as err:
        parse_config({"sources": [_kafka(), source], "delivery": {"guarantee": "exactly_once"}})
    text = str(err.value)
    assert f"{source['name']} ({source['type']})" in text and "Kafka transaction" in text


@pytest.mark.parametrize(("extra", "message"), [
    ({"dedup": {"enabled": False}}, "needs dedup.enabled"),
    ({"sink": {"type": "kafka", "acks": 1, "enable_idempotence": False}}, "needs sink.acks all"),
    ({"sink": {"type": "jsonl", "path": "/tmp/out.jsonl"}}, "needs the kafka sink"),
])
def test_exactly_once_refuses_what_would_break_it(extra: dict[str, object], message: str) -> None:
    """Dedup off, acks below all, or a sink other than Kafka are refused with the reason."""
    with pytest.raises(ConfigError, match=message):
        parse_config({"sources": [_kafka()], "delivery": {"guarantee": "exactly_once"}, **extra})


def test_check_config_explains_the_refusal(tmp_path: Path) -> None:
    """`bridge check-config` prints the location (delivery) and the reason for an SQS source under exactly_once."""
    cfg = tmp_path / "eos.yaml"
    cfg.write_text("delivery: {guarantee: exactly_once}\n"
                   "sources:\n  - {type: kafka, name: k, topics: [in]}\n"
                   "  - {type: sqs, name: aws, queue_url: 'http://localhost/q'}\n")
    res = subprocess.run([sys.executable, "-m", "bridge.cli", "check-config", str(cfg)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "aws (sqs)" in res.stderr and "at_least_once" in res.stderr
