"""Config of the lifecycle state: route options validated with their location, the state block's defaults."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, parse_config


def _errors(data: dict[str, object]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def test_changes_only_options_and_state_block_parse_with_defaults() -> None:
    """changes_only defaults to the status attribute; the state block defaults to no topic, 7 days, created."""
    cfg = parse_config({"routes": [{"name": "t", "topic": "x", "changes_only": True},
                                   {"name": "d", "topic": "y", "changes_only": True,
                                    "state_attributes": ["status", "data.SecondaryStatus"]}],
                        "state": {"topic": "ml.state"}})
    assert cfg.routes[0].state_attributes == ["status"] and cfg.routes[1].state_attributes[1] == "data.SecondaryStatus"
    assert cfg.state.topic == "ml.state" and cfg.state.create_topic and cfg.state.remember_seconds == 7 * 86400
    assert parse_config({}).state.topic is None


def test_invalid_state_options_are_explained_with_their_location() -> None:
    """state_attributes without changes_only, a malformed attribute path, and a route named like the state
    topic's route are errors naming where they are."""
    errors = _errors({"routes": [{"name": "a", "topic": "x", "state_attributes": ["status"]},
                                 {"name": "b", "topic": "x", "changes_only": True, "state_attributes": ["data..x"]}]})
    assert errors[0][0] == "routes[0]" and "set changes_only: true" in errors[0][1]
    assert errors[1][0] == "routes[1].state_attributes" and "invalid attribute path 'data..x'" in errors[1][1]
    errors = _errors({"routes": [{"name": "state", "topic": "x"}], "state": {"topic": "ml.state"}})
    assert "route name 'state' is reserved for the state topic" in errors[0][1]
    parse_config({"routes": [{"name": "state", "topic": "x"}]})  # fine without a state topic


def test_state_topic_config_adds_topic_settings_but_never_drops_compaction() -> None:
    """state.topic_config adds topic configs (Kafka strings, booleans lower case) to cleanup.policy=compact; a
    policy without compact and a name that is no topic config are errors at their location."""
    state = parse_config({"state": {"topic": "s", "topic_config": {
        "segment.ms": 60000, "min.cleanable.dirty.ratio": 0.1, "preallocate": True,
        "cleanup.policy": "compact,delete"}}}).state
    assert state.topic_configs() == {"cleanup.policy": "compact,delete", "segment.ms": "60000",
                                     "min.cleanable.dirty.ratio": "0.1", "preallocate": "true"}
    assert parse_config({"state": {"topic": "s"}}).state.topic_configs() == {"cleanup.policy": "compact"}
    errors = _errors({"state": {"topic": "s", "topic_config": {"cleanup.policy": "delete"}}})
    assert errors[0][0] == "state.topic_config" and "must stay compacted" in errors[0][1]
    errors = _errors({"state": {"topic": "s", "topic_config": {"Segment MS": 1}}})
    assert "'Segment MS' is not a topic config name" in errors[0][1]
