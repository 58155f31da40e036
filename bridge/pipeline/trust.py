"""Source trust: accept events only from the Azure ML workspaces, AWS accounts/regions and event sources you
expect (the Azure ML docs: check an event's topic to make sure it comes from the workspace you expect).

``TrustConfig`` (the ``trust:`` section) holds the global allow-lists and per-source ones under
``trust.sources.<source name>``; ``TrustPolicy.compile`` turns it into a ``TrustPolicy`` whose
``check(event, source_name)`` returns ``None`` (trusted) or the dead-letter reason ``untrusted source: ...``.
It needs only the normalized event: its ``source``, ``platform`` and ``original`` (the input event).

Rules of one set of lists (the global one, then the source's own: an event must pass both):

- No list given: everything passes (``TrustConfig.configured`` is false; the daemon says so at start).
- Azure ML events (``platform`` azureml: Event Grid ``topic`` / CloudEvent ``source``): the source must be a
  well-formed Azure resource ID inside one entry of ``azure_workspaces``, compared case-insensitively segment
  by segment, so an entry may be a workspace, a resource group or a whole subscription. Absent list: no
  Azure event is trusted.
- AWS events (``platform`` sagemaker: EventBridge, or CloudEvents with an ``aws.`` source): ``aws_accounts``,
  ``aws_regions`` and ``event_sources`` (EventBridge ``source``, e.g. ``aws.sagemaker``) each constrain
  when given; at least one must be given, else no AWS event is trusted. An unknown account or region (a
  CloudEvent ``aws.sagemaker`` without them) fails a list that needs it.
- Any disagreement is untrusted: every claim of origin the event carries must name the same origin. The
  claims are the canonical ``source``, the input's own origin fields (EventBridge ``account``/``region``/
  ``source``), and an event envelope found in its data (a CloudEvent in Kafka binary mode whose headers say
  one source while the body is an Event Grid / CloudEvents / EventBridge event from another). The headers
  never win over the body, nor the body over the headers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge import jsonutil
from bridge.envelope import PLATFORM_SAGEMAKER, CloudEvent
from bridge.model import RawMessage

PREFIX: Final = "untrusted source: "
_MAX_SHOWN: Final = 160
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2,}(-[a-z]+)+-\d+$")
_BAD_SEGMENT = re.compile(r"[\s\x00-\x1f\x7f]")
_CACHE_LIMIT: Final = 4096


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 4] + "...'"


def resource_segments(resource_id: str) -> tuple[str, ...] | None:
    """The lower-cased path segments of an Azure resource ID (``/subscriptions/<id>/...``), or ``None`` when
    it is not one: no leading slash, empty, ``.``/``..`` or blank segments, or control characters."""
    if not resource_id.startswith("/"):
        return None
    parts = resource_id[1:].split("/")
    for part in parts:
        if not part or part in (".", "..") or _BAD_SEGMENT.search(part):
            return None
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        return None
    return tuple(p.lower() for p in parts)


class TrustLists(BaseModel):
    """One set of allow-lists. A list left out does not constrain; see the module docstring for the rules."""

    model_config = ConfigDict(extra="forbid")

    azure_workspaces: list[str] | None = Field(
        None,
        description="Azure resource IDs whose events are trusted (Event Grid topic / CloudEvent source), "
        "case-insensitive: a workspace, a resource group (/subscriptions/S/resourceGroups/G) or a "
        "subscription (/subscriptions/S) covers everything under it; [] trusts no Azure event",
    )
    aws_accounts: list[str] | None = Field(
        None, description="12-digit AWS account IDs whose EventBridge events are trusted; [] trusts no AWS event"
    )
    aws_regions: list[str] | None = Field(None, description="AWS regions whose EventBridge events are trusted")
    event_sources: list[str] | None = Field(
        None, description="EventBridge sources whose events are trusted (exact, e.g. aws.sagemaker)"
    )

    @field_validator("azure_workspaces")
    @classmethod
    def _resource_ids(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if resource_segments(entry.rstrip("/")) is None:
                raise ValueError(
                    f"{entry!r} is not an Azure resource ID: expected /subscriptions/<id>"
                    "[/resourceGroups/<group>[/providers/<namespace>/<type>/<name>]]"
                )
        return value

    @field_validator("aws_accounts", mode="before")
    @classmethod
    def _quoted_accounts(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(v, int) for v in value):
            raise ValueError("quote AWS account IDs in YAML ('012345678901'): as numbers they lose leading zeros")
        return value

    @field_validator("aws_accounts")
    @classmethod
    def _accounts(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if not _ACCOUNT.match(entry):
                raise ValueError(f"{entry!r} is not an AWS account ID (12 digits; quote it in YAML)")
        return value

    @field_validator("aws_regions")
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if not _REGION.match(entry):
                raise ValueError(f"{entry!r} is not an AWS region name (like us-east-1)")
        return value

    @field_validator("event_sources")
    @classmethod
    def _sources(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if not entry.strip():
                raise ValueError("an event source must not be empty")
        return value

    @property
    def configured(self) -> bool:
        """True when at least one list of this set is given."""
        return _any_list(self)


def _any_list(lists: TrustLists) -> bool:
    return any(v is not None for v in (lists.azure_workspaces, lists.aws_accounts, lists.aws_regions,
                                       lists.event_sources))


class TrustConfig(TrustLists):
    """The ``trust`` section: global allow-lists, plus per-source ones that apply in addition to them."""

    sources: dict[str, TrustLists] = Field(
        default_factory=dict,
        description="per-source allow-lists by source name; an event must pass the global lists AND its "
        "source's lists",
    )

    @property
    def configured(self) -> bool:
        """True when any list is given, globally or for a source."""
        return _any_list(self) or any(s.configured for s in self.sources.values())


# -- origins ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AwsOrigin:
    """Where an AWS event says it comes from; ``None`` where the event does not tell."""

    service: str | None
    region: str | None
    account: str | None

    def disagrees(self, other: AwsOrigin) -> bool:
        pairs = ((self.service, other.service), (self.region, other.region), (self.account, other.account))
        return any(a is not None and b is not None and a != b for a, b in pairs)


Origin = AwsOrigin | str  # str: an Azure (or other) source, compared case-insensitively


def _text(value: object) -> str | None:
    if type(value) is str and value:
        return value
    if type(value) is list:  # EventBridge examples repeat "source" as a list
        for item in value:
            if type(item) is str and item:
                return item
    return None


def _aws_from_source(source: str) -> AwsOrigin:
    """``aws.sagemaker/<region>/<account>`` (the canonical form) or a bare ``aws.<service>``."""
    parts = source.rsplit("/", 2)
    if len(parts) == 3:
        return AwsOrigin(parts[0], parts[1], parts[2])
    return AwsOrigin(source, None, None)


def _arn_field(resources: object, index: int) -> str | None:
    if type(resources) is list:
        for item in resources:
            if type(item) is str and item.startswith("arn:"):
                fields = item.split(":", 5)
                if len(fields) == 6 and fields[index]:
                    return fields[index]
    return None


def _aws_from_eventbridge(ev: Mapping[str, Any]) -> AwsOrigin:
    resources = ev.get("resources")
    return AwsOrigin(
        _text(ev.get("source")),
        _text(ev.get("region")) or _arn_field(resources, 3),
        _text(ev.get("account")) or _arn_field(resources, 4),
    )


def _envelope_origin(doc: object) -> Origin | None:
    """The origin claimed by an event envelope (CloudEvent, Event Grid, EventBridge), or ``None``."""
    if type(doc) is not dict:
        return None
    if "specversion" in doc:
        source = _text(doc.get("source"))
        if source is None:
            return None
        return _aws_from_source(source) if source.startswith("aws.") else source
    if "eventType" in doc:
        return _text(doc.get("topic"))
    if "detail-type" in doc:
        return _aws_from_eventbridge(doc)
    return None


def _disagree(a: Origin, b: Origin) -> bool:
    if isinstance(a, AwsOrigin) and isinstance(b, AwsOrigin):
        return a.disagrees(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() != b.lower()
    return True


def _describe(origin: Origin) -> str:
    if isinstance(origin, str):
        return _shown(origin)
    return "/".join(p or "?" for p in (origin.service, origin.region, origin.account))


def origin_claims(event: CloudEvent) -> tuple[Origin, list[Origin]]:
    """The event's own origin (from its canonical ``source``) and every other claim it carries."""
    aws = event.platform == PLATFORM_SAGEMAKER
    own: Origin = _aws_from_source(event.source) if aws else event.source
    others: list[Origin] = []
    original = event.original
    if original is not None:
        if "detail-type" in original:
            others.append(_aws_from_eventbridge(original))
        elif "eventType" in original:
            topic = _text(original.get("topic"))
            if topic is not None:
                others.append(topic)
        inner = _envelope_origin(original.get("data") if "detail-type" not in original else original.get("detail"))
        if inner is not None:
            others.append(inner)
    return own, others


# -- the compiled policy ------------------------------------------------------------------------------------
class _Lists:
    """One compiled set of allow-lists; ``where`` names it in reasons (``trust`` or ``trust.sources.X``)."""

    __slots__ = ("accounts", "azure", "azure_lengths", "regions", "services", "where")

    def __init__(self, lists: TrustLists, where: str) -> None:
        self.where = where
        self.azure: frozenset[tuple[str, ...]] | None = None
        self.azure_lengths: tuple[int, ...] = ()
        if lists.azure_workspaces is not None:
            scopes = [resource_segments(e.rstrip("/")) for e in lists.azure_workspaces]
            self.azure = frozenset(s for s in scopes if s is not None)
            self.azure_lengths = tuple(sorted({len(s) for s in self.azure}))
        self.accounts = None if lists.aws_accounts is None else frozenset(lists.aws_accounts)
        self.regions = None if lists.aws_regions is None else frozenset(lists.aws_regions)
        self.services = None if lists.event_sources is None else frozenset(lists.event_sources)

    def check_azure(self, source: str) -> str | None:
        if self.azure is None:
            return f"no Azure workspace is allowed ({self.where}.azure_workspaces not set); event from {_shown(source)}"
        segments = resource_segments(source)
        if segments is None:
            return f"{_shown(source)} is not an Azure resource ID ({self.where}.azure_workspaces)"
        azure = self.azure
        if not any(segments[:n] in azure for n in self.azure_lengths if n <= len(segments)):
            return f"Azure workspace {_shown(source)} is not in {self.where}.azure_workspaces"
        return None

    def check_aws(self, origin: AwsOrigin) -> str | None:
        if self.accounts is None and self.regions is None and self.services is None:
            return (f"no AWS account, region or event source is allowed ({self.where}.aws_accounts, aws_regions, "
                    f"event_sources not set); event from {_describe(origin)}")
        for allowed, value, name in (
            (self.accounts, origin.account, "aws_accounts"),
            (self.regions, origin.region, "aws_regions"),
            (self.services, origin.service, "event_sources"),
        ):
            if allowed is not None and value not in allowed:
                what = {"aws_accounts": "AWS account", "aws_regions": "AWS region", "event_sources": "event source"}
                shown = "unknown" if value is None else _shown(value)
                return f"{what[name]} {shown} is not in {self.where}.{name} (event from {_describe(origin)})"
        return None


class TrustPolicy:
    """The compiled trust configuration; ``check`` is called once per normalized event."""

    def __init__(self, global_lists: _Lists | None, per_source: Mapping[str, _Lists]) -> None:
        self._global = global_lists
        self._per_source = dict(per_source)
        self._cache: dict[tuple[str, str, str], str | None] = {}

    @classmethod
    def compile(cls, config: TrustConfig | None) -> TrustPolicy | None:
        """The policy of a ``trust`` section; ``None`` when no list is configured (accept everything)."""
        if config is None or not config.configured:
            return None
        global_lists = _Lists(config, "trust") if _any_list(config) else None
        per_source = {name: _Lists(lists, f"trust.sources.{name}") for name, lists in config.sources.items()
                      if lists.configured}
        return cls(global_lists, per_source)

    def check(self, event: CloudEvent, source_name: str = "") -> str | None:
        """``None`` if the event is trusted, else the dead-letter reason (``untrusted source: ...``)."""
        own, others = origin_claims(event)
        for claim in others:
            if _disagree(own, claim):
                return (f"{PREFIX}the event says it comes from {_describe(own)} and also from {_describe(claim)}"
                        " (any disagreement is untrusted)")
        key = (source_name, event.platform, event.source)
        cache = self._cache
        if key in cache:
            return cache[key]
        reason = self._check_origin(own, source_name)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = reason
        return reason

    def _check_origin(self, own: Origin, source_name: str) -> str | None:
        for lists in self._applicable(source_name):
            reason = lists.check_aws(own) if isinstance(own, AwsOrigin) else lists.check_azure(own)
            if reason is not None:
                return PREFIX + reason + (f" [bridge source {source_name}]" if source_name else "")
        return None

    def _applicable(self, source_name: str) -> Sequence[_Lists]:
        found = self._per_source.get(source_name)
        if self._global is None:
            return () if found is None else (found,)
        return (self._global,) if found is None else (self._global, found)


def untrusted_body(msg: RawMessage, event: CloudEvent, events_in_message: int) -> bytes:
    """What an untrusted event's dead letter carries: the raw message when it held only this event (and was not
    Kafka binary mode, whose body alone loses the headers), else the event's own input as JSON."""
    if events_in_message == 1 and "ce_specversion" not in msg.headers:
        return msg.body
    return jsonutil.dumps(event.original) if event.original is not None else event.to_json()
