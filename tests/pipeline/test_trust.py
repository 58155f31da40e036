"""The trust stage: allow-lists of Azure workspaces, AWS accounts/regions and event sources, per source too,
and any disagreement between an event's origin claims is untrusted."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.config import ConfigError, parse_config
from bridge.envelope import CloudEvent
from bridge.model import RawMessage
from bridge.normalize import normalize_all
from bridge.pipeline.trust import TrustConfig, TrustPolicy
from bridge.retry import Backoff
from bridge.testing.events import azureml_run_event, sagemaker_training_event

WS = "/subscriptions/1111/resourceGroups/ml-prod/providers/Microsoft.MachineLearningServices/workspaces/ws-prod"
OTHER_WS = "/subscriptions/1111/resourceGroups/ml-prod/providers/Microsoft.MachineLearningServices/workspaces/ws-dev"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "999999999999"


def policy(**lists: Any) -> TrustPolicy:
    compiled = TrustPolicy.compile(TrustConfig.model_validate(lists))
    assert compiled is not None
    return compiled


def one(body: Any, headers: dict[str, bytes] | None = None) -> CloudEvent:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    events, errors = normalize_all(RawMessage(raw, headers or {}))
    assert not errors and len(events) == 1
    return events[0]


def eventgrid(topic: str) -> CloudEvent:
    ev = azureml_run_event("e1", "run-1", 1)
    ev["topic"] = topic
    return one(ev)


def test_no_list_means_no_policy() -> None:
    """Without any list the policy compiles to None: the pipeline accepts every event (and the daemon warns)."""
    assert TrustPolicy.compile(None) is None
    assert TrustPolicy.compile(TrustConfig()) is None
    assert not TrustConfig().configured
    assert TrustConfig.model_validate({"sources": {"a": {"aws_regions": ["us-east-1"]}}}).configured


def test_eventgrid_event_from_another_workspace_is_untrusted() -> None:
    """An Event Grid event whose topic is another workspace is untrusted; the expected one passes, any case."""
    p = policy(azure_workspaces=[WS])
    assert p.check(eventgrid(WS)) is None
    assert p.check(eventgrid(WS.upper())) is None  # Azure resource IDs compare case-insensitively
    reason = p.check(eventgrid(OTHER_WS))
    assert reason is not None and reason.startswith("untrusted source: ")
    assert "ws-dev" in reason and "trust.azure_workspaces" in reason


def test_subscription_and_resource_group_scopes_match_whole_segments() -> None:
    """A subscription or resource group entry covers what is under it, segment by segment, never by prefix."""
    by_group = policy(azure_workspaces=["/subscriptions/1111/resourceGroups/ML-PROD/"])
    assert by_group.check(eventgrid(WS)) is None
    assert by_group.check(eventgrid(WS.replace("ml-prod", "ml-prod2"))) is not None
    by_sub = policy(azure_workspaces=["/subscriptions/1111"])
    assert by_sub.check(eventgrid(OTHER_WS)) is None
    assert by_sub.check(eventgrid(WS.replace("/1111/", "/11111/"))) is not None
    for forged in (WS + "/../../../../../../subscriptions/2222", "subscriptions/1111/x", WS.replace("/ws", "//ws"),
                   "/subscriptions/1111/resourceGroups/ml-prod /x"):
        reason = by_sub.check(eventgrid(forged))
        assert reason is not None and "is not an Azure resource ID" in reason, forged


def test_eventbridge_event_from_another_account_is_untrusted() -> None:
    """An EventBridge event from another account, region or source is untrusted; the expected one passes."""
    p = policy(aws_accounts=[ACCOUNT], aws_regions=["us-east-1"], event_sources=["aws.sagemaker"])
    assert p.check(one(sagemaker_training_event("a", "job", 1))) is None
    reason = p.check(one(sagemaker_training_event("b", "job", 1, account=OTHER_ACCOUNT)))
    assert reason is not None and reason.startswith("untrusted source: AWS account '999999999999'")
    assert p.check(one(sagemaker_training_event("c", "job", 1, region="eu-west-1"))) is not None
    other_service = sagemaker_training_event("d", "job", 1)
    other_service["source"] = "aws.ec2"
    reason = p.check(one(other_service))
    assert reason is not None and "event source 'aws.ec2'" in reason


def test_a_region_hiding_another_account_is_a_disagreement() -> None:
    """A region value with a slash cannot smuggle an allowed account into the canonical source."""
    ev = sagemaker_training_event("a", "job", 1, account="x")
    ev["region"] = f"us-east-1/{ACCOUNT}"
    ev["resources"] = []
    event = one(ev)
    assert event.source == f"aws.sagemaker/us-east-1/{ACCOUNT}/x"
    reason = policy(aws_accounts=["000000000000", ACCOUNT]).check(event)
    assert reason is not None and "disagreement" in reason


def test_each_platform_needs_its_own_list_once_trust_is_configured() -> None:
    """With only Azure lists, AWS events are untrusted (and the other way round): nothing passes by omission."""
    azure_only = policy(azure_workspaces=[WS])
    reason = azure_only.check(one(sagemaker_training_event("a", "job", 1)))
    assert reason is not None and "no AWS account, region or event source is allowed" in reason
    aws_only = policy(aws_accounts=[ACCOUNT])
    reason = aws_only.check(eventgrid(WS))
    assert reason is not None and "no Azure workspace is allowed" in reason
    closed = policy(azure_workspaces=[], aws_accounts=[])
    assert closed.check(eventgrid(WS)) is not None
    assert closed.check(one(sagemaker_training_event("a", "job", 1))) is not None


def test_a_cloudevent_without_account_fails_an_account_list() -> None:
    """A CloudEvent from ``aws.sagemaker`` does not say its account: an account list rejects it, a source list
    alone accepts it; the bridge's own canonical form (``aws.sagemaker/<region>/<account>``) is read back."""
    ce = {"specversion": "1.0", "id": "x", "source": "aws.sagemaker", "type": "Some.Type",
          "time": "2024-01-01T00:00:00Z", "data": {}}
    reason = policy(aws_accounts=[ACCOUNT]).check(one(ce))
    assert reason is not None and "AWS account unknown" in reason
    assert policy(event_sources=["aws.sagemaker"]).check(one(ce)) is None
    canonical = one(sagemaker_training_event("a", "job", 1)).to_dict()
    assert policy(aws_accounts=[ACCOUNT]).check(one(canonical)) is None
    assert policy(aws_accounts=[OTHER_ACCOUNT]).check(one(canonical)) is not None


def binary(source: str, body: Any) -> CloudEvent:
    headers = {"ce_specversion": b"1.0", "ce_id": b"b1", "ce_source": source.encode(),
               "ce_type": b"Microsoft.MachineLearningServices.RunStatusChanged", "ce_time": b"2024-01-01T00:00:00Z",
               "content-type": b"application/json"}
    return one(orjson.dumps(body), headers)


def test_binary_mode_headers_claiming_a_trusted_source_with_another_in_the_body_are_untrusted() -> None:
    """Kafka binary mode: ce_source names the trusted workspace while the body is an event from another one.
    Neither side wins: the disagreement itself is untrusted, even when both sides would be allowed."""
    p = policy(azure_workspaces=["/subscriptions/1111"])
    eg_body = azureml_run_event("e1", "run-1", 1)
    eg_body["topic"] = OTHER_WS
    reason = p.check(binary(WS, eg_body))
    assert reason is not None and reason.startswith("untrusted source: the event says it comes from")
    assert "ws-prod" in reason and "ws-dev" in reason
    ce_body = {"specversion": "1.0", "id": "i", "source": OTHER_WS, "type": "t", "data": {}}
    assert p.check(binary(WS, ce_body)) is not None
    aws_body = sagemaker_training_event("a", "job", 1, account=OTHER_ACCOUNT)
    reason = policy(aws_accounts=[ACCOUNT]).check(binary(f"aws.sagemaker/us-east-1/{ACCOUNT}", aws_body))
    assert reason is not None and "999999999999" in reason
    same = azureml_run_event("e1", "run-1", 1)
    same["topic"] = WS.lower()
    assert p.check(binary(WS, same)) is None  # the body agrees (case-insensitively): no disagreement
    assert p.check(binary(WS, {"runId": "r", "runStatus": "Running"})) is None  # ordinary data


def test_per_source_lists_apply_in_addition_to_the_global_ones() -> None:
    """A source's own lists narrow the global ones for that source only; other sources use the global lists."""
    p = policy(azure_workspaces=["/subscriptions/1111"], aws_accounts=[ACCOUNT],
               sources={"azure": {"azure_workspaces": [WS], "aws_accounts": []}})
    assert p.check(eventgrid(OTHER_WS), "other") is None
    reason = p.check(eventgrid(OTHER_WS), "azure")
    assert reason is not None and "trust.sources.azure.azure_workspaces" in reason and "[bridge source azure]" in reason
    assert p.check(eventgrid(WS), "azure") is None
    assert p.check(one(sagemaker_training_event("a", "job", 1)), "azure") is not None
    assert p.check(one(sagemaker_training_event("a", "job", 1)), "aws") is None
    only_source = policy(sources={"azure": {"azure_workspaces": [WS]}})
    assert only_source.check(eventgrid(OTHER_WS), "kafka") is None
    assert only_source.check(eventgrid(OTHER_WS), "azure") is not None


def test_config_errors_name_the_bad_entry() -> None:
    """Malformed entries are config errors with their location; unquoted account numbers are refused."""
    with pytest.raises(ValidationError, match="not an Azure resource ID"):
        TrustConfig.model_validate({"azure_workspaces": ["/resourceGroups/x"]})
    with pytest.raises(ValidationError, match="quote AWS account IDs"):
        TrustConfig.model_validate({"aws_accounts": [123456789012]})
    with pytest.raises(ValidationError, match="not an AWS account ID"):
        TrustConfig.model_validate({"aws_accounts": ["1234"]})
    with pytest.raises(ValidationError, match="not an AWS region"):
        TrustConfig.model_validate({"aws_regions": ["US East"]})
    with pytest.raises(ConfigError) as info:
        parse_config({"sources": [{"type": "kafka", "name": "k"}], "trust": {"sources": {"azure": {}}}})
    assert info.value.errors[0][0] == "trust" and "['azure']" in info.value.errors[0][1]


segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1,
                  max_size=8).filter(lambda s: s not in (".", ".."))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=7), st.integers(min_value=0, max_value=8), st.data())
def test_scope_matching_is_segment_prefix_ignoring_case(tail: list[str], cut: int, data: st.DataObject) -> None:
    """An entry accepts exactly the resource IDs whose segments start with its segments, whatever the case."""
    segments = ["subscriptions", *tail]
    resource = "/" + "/".join(segments)
    n = min(max(cut, 2), len(segments))
    entry = "/" + "/".join(segments[:n])
    swapped = "".join(c.swapcase() if data.draw(st.booleans()) else c for c in entry)
    assert policy(azure_workspaces=[swapped]).check(eventgrid(resource)) is None
    other = data.draw(st.lists(segment, min_size=1, max_size=7))
    other_resource = "/" + "/".join(["subscriptions", *other])
    expected = [s.lower() for s in other[: n - 1]] == [s.lower() for s in segments[1:n]] and len(other) >= n - 1
    assert (policy(azure_workspaces=[entry]).check(eventgrid(other_resource)) is None) == expected


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["specversion", "eventType", "detail-type", "topic", "source", "account",
                                        "region", "resources", "detail", "data"]),
                       st.one_of(st.none(), st.text(max_size=12), st.lists(st.text(max_size=12), max_size=2),
                                 st.integers())))
def test_check_never_raises_on_odd_data(data: dict[str, Any]) -> None:
    """Whatever an event's data holds, check returns None or an ``untrusted source:`` reason, never raises."""
    p = policy(azure_workspaces=[WS], aws_accounts=[ACCOUNT])
    for event in (eventgrid(WS), one(sagemaker_training_event("a", "job", 1))):
        result = p.check(event.evolve(data=data, original={**(event.original or {}), "data": data,
                                                           "detail": data}))
        assert result is None or result.startswith("untrusted source: ")


async def test_pipeline_dead_letters_untrusted_events_counts_them_and_never_records_them_in_dedup() -> None:
    """Untrusted events go to the dead-letter topic with the reason, are counted per source, are never routed,
    and leave no dedup record: the genuine event with the same (source, id) arriving later is delivered."""
    from bridge.metrics import Metrics
    from bridge.pipeline.core import Pipeline
    from bridge.pipeline.dedup import Deduplicator, MemoryDedupStore
    from bridge.pipeline.router import Route, Router
    from bridge.testing.memory import CapturingSink, InMemorySource

    sink = CapturingSink()
    metrics = Metrics()
    pipeline = Pipeline(Router([Route("all", "ml.events")]), sink, dedup=Deduplicator(MemoryDedupStore()),
                        metrics=metrics, trust=policy(azure_workspaces=[WS]), retry_backoff=Backoff(0.001, 0.01))
    src = InMemorySource(name="azure", batch_size=10)
    forged = azureml_run_event("e1", "run-1", 1)
    forged["topic"] = OTHER_WS
    headers = {"ce_specversion": b"1.0", "ce_id": b"e1", "ce_source": WS.encode(), "ce_time": b"2024-01-01T00:00:00Z",
               "ce_type": b"Microsoft.MachineLearningServices.RunStatusChanged"}
    src.put(orjson.dumps(forged), headers)  # claims WS in its headers, OTHER_WS in its body; dedup key (WS, e1)
    trusted = azureml_run_event("e2", "run-1", 2)
    trusted["topic"] = WS
    src.put(orjson.dumps([forged, trusted]))  # one bad element in an array
    genuine = azureml_run_event("e1", "run-1", 3)
    genuine["topic"] = WS
    src.put(genuine)  # same (source, id) as the forged binary-mode event
    src.close_input()
    async for batch in src.batches():
        await pipeline.submit(batch)
    await pipeline.flush()
    await pipeline.close(1.0)
    assert sorted(d.event.id for d in sink.routed) == ["e1", "e2"]
    assert all(d.event.source == WS for d in sink.routed)
    assert len(sink.dead) == 2 and all(d.reason.startswith("untrusted source: ") for d in sink.dead)
    array_dead = next(d for d in sink.dead if "disagreement" not in d.reason)
    assert orjson.loads(array_dead.raw) == forged  # the element alone, not the whole array
    binary_dead = next(d for d in sink.dead if "disagreement" in d.reason)
    assert orjson.loads(binary_dead.raw)["source"] == WS and binary_dead.source == "azure"
    assert src.all_acked_once
    text = metrics.render().decode()
    assert 'bridge_untrusted_total{source="azure"} 2.0' in text
    assert 'bridge_deadlettered_total{kind="untrusted"} 2.0' in text


def test_replay_with_a_trust_config_dead_letters_foreign_events(tmp_path: Any) -> None:
    """`bridge replay` applies the trust section: a foreign account's event becomes a dead-letter line."""
    import io

    from bridge.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"trust:\n  aws_accounts: ['{ACCOUNT}']\n")
    lines = [sagemaker_training_event("a", "job", 1), sagemaker_training_event("b", "job", 2, account=OTHER_ACCOUNT)]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["replay", "--config", str(cfg), "--input", str(inp), "--output", str(out)]) == 0
    rows = [orjson.loads(x) for x in io.BytesIO(out.read_bytes())]
    assert [r["route"] for r in rows] == ["deadletter", "all"] or [r["route"] for r in rows] == ["all", "deadletter"]
    dead = next(r for r in rows if r["route"] == "deadletter")
    assert dead["error"].startswith("untrusted source: AWS account '999999999999'")
    assert orjson.loads(dead["input"])["id"] == "b"


def test_check_config_prints_the_lists_in_force(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`bridge check-config` says whether trust is configured and counts each list, global and per source."""
    from bridge.cli import cmd_check_config

    class Args:
        file = ""

    cfg = tmp_path / "t.yaml"
    cfg.write_text("sources: [{type: kafka, name: k}]\ntrust:\n  aws_accounts: ['123456789012']\n"
                   "  sources: {k: {azure_workspaces: ['/subscriptions/1', '/subscriptions/2']}}\n")
    Args.file = str(cfg)
    assert cmd_check_config(Args()) == 0  # type: ignore[arg-type]
    assert "trust: aws_accounts 1; per source: k: azure_workspaces 2" in capsys.readouterr().out
    cfg.write_text("{}\n")
    assert cmd_check_config(Args()) == 0  # type: ignore[arg-type]
    assert "trust: not configured" in capsys.readouterr().out
