"""The bridge configuration: one YAML file validated with pydantic, secrets from environment variables.

``${VAR}`` and ``${VAR:-default}`` inside string values are replaced from the environment before
validation. Each connector's config model lives beside its code (``bridge/sources/*.py`` and ``bridge/sinks/*.py``,
registered in ``bridge.sources.registry`` and ``bridge.sinks.registry``, which validate a ``sources[]`` entry and
the ``sink`` by their ``type``); this module assembles them. ``load_config`` raises ``ConfigError`` whose
``errors`` list every problem with its location (``routes[1].filters[0].pattern.detail.status``,
``routes[0].filters[0]: cesql: parse error at position 12: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.envsubst import expand
from bridge.filters import Filter, FilterError, compile_filter
from bridge.filters.base import join_path
from bridge.limits import LimitsConfig
from bridge.pipeline.trust import TrustConfig
from bridge.sinks import registry as sinks
from bridge.sinks.registry import SinkConfig
from bridge.sources.registry import SourceConfig, connector
from bridge.state.attributes import getter
from bridge.state.config import STATE_ROUTE, StateConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Strict):
    host: str = Field("0.0.0.0", description="address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="port of /healthz, /readyz, /metrics (0: any free port)")


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="debug logs every published event")
    format: Literal["json", "console"] = Field("json", description="JSON lines (default) or human-readable")


class DedupConfig(_Strict):
    enabled: bool = Field(True, description="drop events whose (source, id) was already delivered")
    store: Literal["memory", "redis"] = Field(
        "memory", description="memory: per process; redis: shared by replicas, survives restarts"
    )
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL for store redis (may hold a password: use ${VAR})"
    )
    key_prefix: str = Field("bridge:dedup:", description="prefix of the Redis keys")
    window_seconds: float = Field(600.0, gt=0, description="how long an id is remembered")
    store_timeout_seconds: float = Field(
        2.0, gt=0, description="longest wait for one Redis call (connect, check, record) before it counts as failed"
    )
    on_store_error: Literal["block", "pass"] = Field(
        "block",
        description="Redis failing: block = hold the pipeline and retry with backoff (not ready, nothing published "
        "unchecked); pass = publish without dedup (counted in bridge_dedup_bypassed_total) until Redis answers",
    )
    max_entries: int = Field(
        1_000_000, ge=1,
        description="most ids remembered (memory store, ~90 bytes each; capped by the memory budget, limits.memory_mb)",
    )


class ReorderConfig(_Strict):
    enabled: bool = Field(True, description="restore per-subject order")
    max_delay_ms: int = Field(2000, ge=0, description="longest time an event is held")
    max_events: int = Field(
        100_000, ge=1,
        description="events held at most; beyond, the oldest are released early (bytes are bounded too, by "
        "limits.memory_mb)",
    )
    max_subjects: int = Field(
        1_000_000, ge=1, description="subjects whose last emitted sequence is remembered (late detection)"
    )
    late_policy: Literal["emit", "drop", "deadletter"] = Field(
        "emit", description="what to do with an event older than one already emitted"
    )


class FilterConfig(_Strict):
    """One filter of a route: ``cesql: "<expression>"`` (CloudEvents SQL), or ``pattern`` with an optional
    ``dialect``, or the shorthand ``eventbridge: {...}`` / ``eventgrid: {...}``. ``target`` chooses the canonical
    or the original event."""

    cesql: str | None = Field(
        None, description="CloudEvents SQL (CESQL v1) expression, e.g. \"type = 'ml.job.status_changed' AND status = "
        "'failed'\" (instead of pattern)"
    )
    pattern: dict[str, Any] | None = Field(
        None, description="EventBridge event pattern or Event Grid subscription filter (or {cesql: ...})"
    )
    dialect: Literal["auto", "cesql", "eventbridge", "eventgrid"] = Field(
        "auto", description="auto: recognised from the shape"
    )
    target: Literal["canonical", "original"] = Field(
        "canonical", description="match the canonical CloudEvent or the original event"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for dialect in ("eventbridge", "eventgrid"):
                if dialect in value and "pattern" not in value:
                    value = dict(value)
                    value["pattern"] = value.pop(dialect)
                    value["dialect"] = dialect
        return value

    @model_validator(mode="after")
    def _compiles(self) -> FilterConfig:
        try:
            self.compile()
        except FilterError as exc:
            raise ValueError(exc.message if exc.path == "$" else str(exc)) from None
        return self

    def compile(self, path: str = "") -> Filter:
        """The compiled filter; error paths start with ``path`` (``routes[0].filters[1]``) and the key of the
        spec (``cesql``, ``pattern``). Raises ``FilterError``."""
        if (self.cesql is None) == (self.pattern is None):
            raise FilterError(path, "a filter has either cesql or pattern (or the eventbridge / eventgrid shorthand)")
        if self.cesql is not None:
            if self.dialect not in ("auto", "cesql"):
                raise FilterError(join_path(path, "dialect"), f"{self.dialect} does not apply to a cesql expression")
            return compile_filter({"cesql": self.cesql}, "cesql", path)
        assert self.pattern is not None
        return compile_filter(self.pattern, self.dialect, join_path(path, "pattern"))


class RouteConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="unique route name (metrics label, replay output)")
    topic: str = Field(
        min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$", description="destination Kafka topic"
    )
    filters: list[FilterConfig] = Field(default_factory=list, description="all must match; none: every event")
    changes_only: bool = Field(
        False, description="publish an event only when its state (state_attributes) differs from the last one this "
        "route published for its subject; the last state lives in the dedup store (memory, or Redis shared by "
        "replicas) and is recorded once published; a late event is never a change",
    )
    state_attributes: list[str] = Field(
        default_factory=lambda: ["status"], min_length=1,
        description="changes_only: the attributes whose values make the state, e.g. [status, data.SecondaryStatus] "
        "(a context attribute or extension, or a dotted path into data)",
    )

    @field_validator("state_attributes")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        for p in paths:
            getter(p)  # raises ValueError with the reason
        return paths

    @model_validator(mode="after")
    def _attributes_need_changes_only(self) -> RouteConfig:
        if "state_attributes" in self.model_fields_set and not self.changes_only:
            raise ValueError("state_attributes applies to changes_only routes: set changes_only: true")
        return self


class DeadLetterConfig(_Strict):
    topic: str = Field(
        "ml.events.deadletter",
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="topic for undecodable input and late events (policy deadletter); reason in headers",
    )


class ReadinessConfig(_Strict):
    stall_seconds: float = Field(
        60.0, gt=0, description="pending work and no event settled or acked for this long: /readyz answers 503"
    )
    probe_interval_seconds: float = Field(
        5.0, gt=0, description="how often the Kafka brokers (sink, Kafka sources) are asked for metadata"
    )
    probe_timeout_seconds: float = Field(
        5.0, gt=0, description="a broker that does not answer the probe within this is unreachable (not ready)"
    )


class ShutdownConfig(_Strict):
    grace_seconds: float = Field(
        25.0, gt=0, description="time to drain and commit after SIGTERM; the process exits within it, whatever is "
        "blocked (undelivered events stay unacknowledged upstream)"
    )


class DeliveryConfig(_Strict):
    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="at_least_once: a crash may publish an event again (dedup suppresses copies within its window); "
        "exactly_once: Kafka sources into the Kafka sink through Kafka transactions, per input partition: routed "
        "records, dead letters, state-topic records, the durable state and the consumer offsets commit together "
        "(read the outputs read_committed; docs/design.md, Exactly once)",
    )
    transaction_max_records: int = Field(
        5000, ge=1, description="exactly_once: a transaction commits once it holds this many records (or sooner)"
    )
    transaction_max_ms: int = Field(
        100, ge=1,
        description="exactly_once: a transaction commits at the latest this long after it began (outputs become "
        "visible to read_committed readers at commit)",
    )
    transaction_timeout_ms: int = Field(
        60_000, ge=1000, le=900_000,
        description="exactly_once: the broker aborts a transaction left open this long (a replica that froze)",
    )
    changelog_topic: str | None = Field(
        None, description="exactly_once: the compacted topic of the durable state (dedup ids, last sequences, last "
        "states); default <group_id>.bridge-changelog per Kafka source, created at start",
    )


def _default_routes() -> list[RouteConfig]:
    return [RouteConfig(name="all", topic="ml.events")]


class BridgeConfig(_Strict):
    http: HttpConfig = Field(default_factory=HttpConfig, description="the HTTP server of the probes and metrics")
    log: LogConfig = Field(default_factory=LogConfig, description="log level and format")
    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="where events come from, each with its type; none: bridge run reads Kafka on localhost:9092",
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="duplicate suppression")
    reorder: ReorderConfig = Field(default_factory=ReorderConfig, description="per-subject reorder buffer")
    routes: list[RouteConfig] = Field(
        default_factory=_default_routes, min_length=1,
        description="where events go; default: one route `all` publishing every event to ml.events",
    )
    deadletter: DeadLetterConfig = Field(
        default_factory=DeadLetterConfig, description="where what cannot be processed goes"
    )
    trust: TrustConfig = Field(default_factory=TrustConfig, description="allow-lists of event origins")
    sink: SinkConfig | None = Field(
        None, description="where events go, with its type (default kafka: a Kafka producer); none: bridge run "
        "publishes to Kafka on localhost:9092",
    )
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig, description="graceful shutdown")
    readiness: ReadinessConfig = Field(default_factory=ReadinessConfig, description="what /readyz checks")
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="the memory budget")
    state: StateConfig = Field(default_factory=StateConfig, description="ML lifecycle state (state topic)")
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig,
                                     description="delivery guarantee: at least once, or exactly once (Kafka to Kafka)")

    @model_validator(mode="after")
    def _exactly_once_is_kafka_to_kafka(self) -> BridgeConfig:
        if self.delivery.guarantee != "exactly_once":
            return self
        others = [f"{s.name} ({s.type})" for s in self.sources if s.type != "kafka"]
        if others:
            raise ValueError(
                f"delivery.guarantee exactly_once takes Kafka sources only, not {', '.join(others)}: a Kafka "
                "transaction can commit Kafka consumer offsets with the outputs, but not an SQS delete or an Event "
                "Hubs checkpoint, so those sources could publish an event twice; run them in a bridge with "
                "at_least_once (dedup suppresses their copies), or bridge them into Kafka first")
        if self.sink is not None and self.sink.type != "kafka":
            raise ValueError(f"delivery.guarantee exactly_once needs the kafka sink, not {self.sink.type}")
        if not self.dedup.enabled:
            raise ValueError("delivery.guarantee exactly_once needs dedup.enabled: the ids of committed events (kept "
                             "in the changelog topic) are how a record read again after an abort is recognised")
        if self.sink is not None and getattr(self.sink, "acks", "all") != "all":
            raise ValueError("delivery.guarantee exactly_once needs sink.acks all (transactions are idempotent)")
        return self

    @model_validator(mode="after")
    def _state_route_name(self) -> BridgeConfig:
        if self.state.topic is not None and any(r.name == STATE_ROUTE for r in self.routes):
            raise ValueError(f"route name {STATE_ROUTE!r} is reserved for the state topic (state.topic) in metrics "
                             "and replay output: rename the route")
        return self

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: list[RouteConfig]) -> list[RouteConfig]:
        seen: set[str] = set()
        for r in routes:
            if r.name in seen:
                raise ValueError(f"duplicate route name {r.name!r}")
            if r.name == "deadletter":
                raise ValueError("route name 'deadletter' is reserved for the dead-letter output")
            seen.add(r.name)
        return routes

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate source names {sorted(dup)}: give each source its own name")
        return sources

    @field_validator("trust")
    @classmethod
    def _trust_names_sources(cls, trust: TrustConfig, info: ValidationInfo) -> TrustConfig:
        names = {s.name for s in info.data.get("sources", [])}
        unknown = sorted(set(trust.sources) - names)
        if unknown:
            raise ValueError(f"sources {unknown} named in trust.sources are not configured (sources: {sorted(names)})")
        return trust

    def with_run_defaults(self) -> BridgeConfig:
        """``bridge run`` without sources or sink: Kafka on localhost:9092, input topic ml.events.raw."""
        update: dict[str, Any] = {}
        if not self.sources:
            update["sources"] = [connector("kafka").config(type="kafka")]
        if self.sink is None:
            update["sink"] = sinks.connector("kafka").config(type="kafka")
        return self.model_copy(update=update)


class ConfigError(Exception):
    """An invalid configuration; ``errors`` holds (location, message) pairs, all of them."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "") -> None:
        self.errors = errors
        self.source = source
        lines = "\n".join(f"  {loc or '<root>'}: {msg}" for loc, msg in errors)
        super().__init__(f"invalid configuration{f' in {source}' if source else ''}:\n{lines}")


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def substitute_env(
    tree: Any, env: Mapping[str, str], path: tuple[Any, ...] = (), errors: list[tuple[str, str]] | None = None
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    errs = errors if errors is not None else []
    if isinstance(tree, dict):
        return {k: substitute_env(v, env, (*path, k), errs) for k, v in tree.items()}
    if isinstance(tree, list):
        return [substitute_env(v, env, (*path, i), errs) for i, v in enumerate(tree)]
    if isinstance(tree, str) and "${" in tree:

        def missing(name: str) -> None:
            errs.append((_loc(path), f"environment variable {name} is not set (and no ${{{name}:-default}})"))

        return expand(tree, env, missing)
    return tree


def parse_config(data: Any, env: Mapping[str, str] | None = None, source: str = "") -> BridgeConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"the configuration must be a mapping, not {type(data).__name__}")], source)
    errors: list[tuple[str, str]] = []
    data = substitute_env(data, os.environ if env is None else env, (), errors)
    try:
        cfg = BridgeConfig.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            msg = e["msg"].removeprefix("Value error, ")
            errors.append((_loc(tuple(e["loc"])), msg))
        raise ConfigError(errors, source) from None
    if errors:
        raise ConfigError(errors, source)
    return cfg


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read, substitute and validate a config file; ``None`` gives the built-in default."""
    if path is None:
        return BridgeConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {p}: {exc.strerror}")], str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([(where, f"YAML syntax error: {problem}")], str(p)) from None
    return parse_config(data, env, str(p))
