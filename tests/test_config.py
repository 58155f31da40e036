"""Config loading: defaults of docs/design.md ("Command line"), env substitution for secrets, filter validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config


def test_default_config_matches_the_design() -> None:
    """No config means dedup on, reorder on, late emit, one route 'all' to ml.events, DLQ ml.events.deadletter."""
    cfg = load_config(None)
    assert cfg.dedup.enabled and cfg.reorder.enabled and cfg.reorder.late_policy == "emit"
    assert [(r.name, r.topic, r.filters) for r in cfg.routes] == [("all", "ml.events", [])]
    assert cfg.deadletter.topic == "ml.events.deadletter"


def test_run_defaults_add_kafka_source_and_sink_on_localhost() -> None:
    """`bridge run` without sources/sink gets a Kafka source on localhost:9092 topic ml.events.raw and a sink."""
    cfg = load_config(None).with_run_defaults()
    src = cfg.sources[0]
    assert src.type == "kafka" and src.bootstrap_servers == "localhost:9092" and src.topics == ["ml.events.raw"]
    assert cfg.sink is not None and cfg.sink.bootstrap_servers == "localhost:9092"


def test_environment_variables_fill_secrets_and_defaults() -> None:
    """${VAR} is read from the environment and ${VAR:-default} falls back to its default."""
    cfg = parse_config({"dedup": {"store": "redis", "redis_url": "${REDIS_URL}"},
                        "deadletter": {"topic": "${DLQ:-dead.letters}"}},
                       env={"REDIS_URL": "redis://:s3cret@redis:6379/0"})
    assert cfg.dedup.redis_url.get_secret_value() == "redis://:s3cret@redis:6379/0"
    assert "s3cret" not in repr(cfg)
    assert cfg.deadletter.topic == "dead.letters"


def test_missing_environment_variable_is_an_error_with_location() -> None:
    """An unset variable without default is reported at the key that uses it."""
    with pytest.raises(ConfigError) as exc:
        parse_config({"deadletter": {"topic": "${NOT_SET_ANYWHERE}"}}, env={})
    assert exc.value.errors[0][0] == "deadletter.topic"


def test_filter_shorthand_and_dialects_are_compiled_at_load() -> None:
    """`eventbridge:`/`eventgrid:` shorthands set the dialect; a pattern in the wrong dialect fails at load."""
    cfg = parse_config({"routes": [{"name": "a", "topic": "t", "filters": [
        {"eventgrid": {"subjectBeginsWith": "models/"}},
        {"eventbridge": {"status": ["failed"]}, "target": "original"}]}]})
    f = cfg.routes[0].filters
    assert (f[0].dialect, f[1].dialect, f[1].target) == ("eventgrid", "eventbridge", "original")
    with pytest.raises(ConfigError) as exc:
        parse_config({"routes": [{"name": "a", "topic": "t", "filters": [
            {"eventgrid": {"advancedFilters": [{"operatorType": "NumberFoo", "key": "data.x", "value": 1}]}}]}]})
    assert exc.value.errors[0][0] == "routes[0].filters[0]"


def test_cesql_filters_are_compiled_at_load_and_errors_name_path_and_position() -> None:
    """`cesql:` holds a CloudEvents SQL expression; a parse error is a config error at the filter's location that
    names the key and the position of the mistake, as do the checks done at load (Boolean result, known function,
    one spec per filter, a dialect that fits)."""
    cfg = parse_config({"routes": [{"name": "a", "topic": "t", "filters": [
        {"cesql": "type = 'ml.job.status_changed' AND status = 'failed'"},
        {"pattern": {"cesql": "platform IN ('azureml', 'sagemaker')"}, "target": "original"}]}]})
    f = cfg.routes[0].filters
    assert (f[0].cesql, f[0].dialect, f[1].pattern, f[1].target) == (
        "type = 'ml.job.status_changed' AND status = 'failed'", "auto",
        {"cesql": "platform IN ('azureml', 'sagemaker')"}, "original")
    bad = {
        "type = 'x' AND status = ": "cesql: parse error at position 25: expected a value",
        "status = 'failed' AND (platform = 'azureml'":
            "cesql: parse error at position 44: expected ')' to close the '(' at position 23",
        "LENGTH(subject)": "cesql: a filter must evaluate to a Boolean; this expression gives Integer values",
        "STARTS_WITH(subject, 'x')": "cesql: position 1: there is no function STARTS_WITH taking 2 argument(s)",
    }
    for expression, message in bad.items():
        with pytest.raises(ConfigError) as exc:
            parse_config({"routes": [{"name": "a", "topic": "t", "filters": [{"cesql": expression}]}]})
        [(location, text)] = exc.value.errors
        assert location == "routes[0].filters[0]" and text.startswith(message), (expression, text)
    for spec, message in [
        ({"cesql": "x = 1", "pattern": {"a": ["b"]}}, "a filter has either cesql or pattern"),
        ({"target": "original"}, "a filter has either cesql or pattern"),
        ({"cesql": "x = 1", "dialect": "eventbridge"}, "dialect: eventbridge does not apply to a cesql expression"),
        ({"pattern": {"cesql": "x = (1"}}, "pattern.cesql: parse error at position 7"),
        ({"pattern": {"cesql": "x = 1", "status": ["a"]}}, 'pattern.status: a CESQL filter has the single key'),
    ]:
        with pytest.raises(ConfigError) as exc:
            parse_config({"routes": [{"name": "a", "topic": "t", "filters": [spec]}]})
        assert exc.value.errors[0][1].startswith(message), exc.value.errors


def test_duplicate_route_names_and_reserved_name_are_rejected() -> None:
    """Route names are unique and 'deadletter' is reserved for the dead-letter output lines."""
    for routes in ([{"name": "a", "topic": "t"}, {"name": "a", "topic": "u"}], [{"name": "deadletter", "topic": "t"}]):
        with pytest.raises(ConfigError):
            parse_config({"routes": routes})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing config file gives a ConfigError naming the file, not a traceback."""
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read" in str(exc.value)
