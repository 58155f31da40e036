"""Input shapes: Event Grid and CloudEvents arrays, Kafka binary mode, SNS wrapping, unknown types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bridge.model import RawMessage
from bridge.normalize import NormalizeError, normalize, normalize_all
from tests.normalize.corpus_util import corpus_lines, one


def _objs(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in corpus_lines(name)]


def _eventbridge(**overrides: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "version": "0",
        "id": "e-1",
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2024-01-02T03:04:05Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:sagemaker:eu-west-1:123456789012:training-job/tj"],
        "detail": {"TrainingJobName": "tj", "TrainingJobStatus": "InProgress"},
    }
    ev.update(overrides)
    return ev


def test_event_grid_array_gives_one_event_per_element() -> None:
    """An Event Grid array yields one canonical event per element, in order, each with its own original."""
    objs = _objs("azureml_eventgrid")
    events = normalize(RawMessage(body=orjson.dumps(objs)))
    assert [e.origtype.rsplit(".", 1)[1] for e in events] == [
        "ModelRegistered",
        "ModelDeployed",
        "RunCompleted",
        "DatasetDriftDetected",
        "RunStatusChanged",
    ]
    assert [e.original for e in events] == objs


def test_cloudevents_batch_array() -> None:
    """A CloudEvents batch (JSON array) yields one event per element, same as single objects."""
    objs = _objs("azureml_cloudevents")
    events = normalize(RawMessage(body=orjson.dumps(objs)))
    singles = [one(orjson.dumps(o)) for o in objs]
    assert events == singles
    assert [e.original for e in events] == objs


def test_array_with_bad_elements_keeps_good_ones() -> None:
    """normalize_all returns good elements and per-element errors with index and element; normalize raises."""
    good = _objs("azureml_eventgrid")[0]
    bad = dict(good)
    del bad["id"]
    msg = RawMessage(body=orjson.dumps([good, 7, bad, good]))
    events, errors = normalize_all(msg)
    assert len(events) == 2
    assert [(e.index, e.reason) for e in errors] == [
        (1, "unsupported shape: JSON array element 1 is not an object"),
        (2, "missing required field 'id' (JSON array element 2)"),
    ]
    assert errors[0].element == 7
    assert errors[1].element == bad
    with pytest.raises(NormalizeError) as info:
        normalize(msg)
    assert info.value.reason == "unsupported shape: JSON array element 1 is not an object"


def test_mixed_shapes_in_one_array() -> None:
    """One array may mix Event Grid, CloudEvents and EventBridge elements."""
    body = orjson.dumps([_objs("azureml_eventgrid")[4], _objs("azureml_cloudevents")[2], _eventbridge()])
    events = normalize(RawMessage(body=body))
    assert [e.type for e in events] == ["ml.job.status_changed", "ml.job.completed", "ml.job.status_changed"]
    assert [e.platform for e in events] == ["azureml", "azureml", "sagemaker"]


def test_binary_mode_headers() -> None:
    """Kafka binary mode: attributes from ce_* headers, body is data, extra ce_ headers become extensions."""
    data = {"runStatus": "Running", "runId": "r1"}
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": b"b-1",
        "ce_type": b"Microsoft.MachineLearningServices.RunStatusChanged",
        "ce_source": b"/subscriptions/s/workspaces/w",
        "ce_subject": b"experiments/e/runs/r1",
        "ce_time": b"2024-05-06T07:08:09.1234567Z",
        "ce_traceparent": b"00-abc-def-01",
        "content-type": b"application/json",
        "unrelated": b"x",
    }
    ev = one(orjson.dumps(data), headers)
    assert (ev.id, ev.type, ev.subject, ev.status) == (
        "b-1",
        "ml.job.status_changed",
        "experiments/e/runs/r1",
        "running",
    )
    assert ev.time == "2024-05-06T07:08:09.123456Z"
    assert ev.data == data
    assert ev.extensions == {"traceparent": "00-abc-def-01"}
    assert ev.attributes()["traceparent"] == "00-abc-def-01"
    assert ev.original is not None and ev.original["data"] == data and ev.original["id"] == "b-1"


def test_binary_mode_sequence_header_and_text_data() -> None:
    """A ce_sequence header is the explicit sequencer; a non-JSON content-type keeps the body as text."""
    headers = {
        "ce_specversion": b"1.0",
        "ce_id": b"b-2",
        "ce_type": b"Custom.Thing",
        "ce_source": b"/x",
        "ce_time": b"2024-05-06T07:08:09Z",
        "ce_sequence": b"42",
        "content-type": b"text/plain",
    }
    ev = one(b"hello", headers)
    assert ev.sequence == "s:00000000000000000042"
    assert ev.data == "hello"
    assert ev.datacontenttype == "text/plain"
    assert ev.subject == "/x"  # no subject: the source is the partition key
    assert ev.type == "ml.resource.status_changed"


def test_sns_notification_wrapping_eventbridge() -> None:
    """An SNS Notification whose Message holds an EventBridge event is unwrapped (original = inner)."""
    inner = _objs("sagemaker")[0]
    sns = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": orjson.dumps(inner).decode(),
        "Timestamp": "2024-01-01T00:00:00.000Z",
    }
    ev = one(orjson.dumps(sns))
    assert ev == one(orjson.dumps(inner))
    assert ev.original == inner
    assert ev.subject == "training-job/kmeans-1"


def test_unknown_sagemaker_detail_type_flows() -> None:
    """An unknown SageMaker detail-type becomes ml.resource.status_changed with generic status and subject."""
    ev = one(
        orjson.dumps(
            _eventbridge(
                **{
                    "detail-type": "SageMaker Shiny New Thing State Change",
                    "resources": [],
                    "detail": {
                        "ShinyThingArn": "arn:aws:sagemaker:eu-west-1:123456789012:shiny-thing/s1",
                        "ShinyThingStatus": "IN_PROGRESS",
                    },
                }
            )
        )
    )
    assert (ev.type, ev.subject, ev.status) == ("ml.resource.status_changed", "shiny-thing/s1", "running")
    assert ev.origtype == "SageMaker Shiny New Thing State Change"


def test_unknown_detail_type_without_anything_uses_kind() -> None:
    """With no ARN and no status anywhere, the subject is the kind derived from the detail-type."""
    ev = one(
        orjson.dumps(
            _eventbridge(**{"detail-type": "SageMaker Mystery Event", "resources": [], "detail": {}})
        )
    )
    assert (ev.type, ev.subject, ev.status) == ("ml.resource.status_changed", "mystery", None)


def test_unknown_azure_type_flows() -> None:
    """An unknown Azure event type (ML or not) becomes ml.resource.status_changed and keeps its origtype."""
    base = _objs("azureml_eventgrid")[0]
    other = dict(
        base, eventType="Microsoft.MachineLearningServices.JobSomethingNew", data={"runStatus": "Queued"}
    )
    ev = one(orjson.dumps(other))
    assert (ev.type, ev.status, ev.origtype) == (
        "ml.resource.status_changed",
        "pending",
        "Microsoft.MachineLearningServices.JobSomethingNew",
    )
    blob = dict(base, eventType="Microsoft.Storage.BlobCreated", data={"url": "u"})
    ev = one(orjson.dumps(blob))
    assert (ev.type, ev.status, ev.platform) == ("ml.resource.status_changed", None, "azureml")


def test_non_sagemaker_eventbridge_source() -> None:
    """An EventBridge event from another source keeps its own source prefix and gets platform sagemaker."""
    ev = one(
        orjson.dumps(
            _eventbridge(
                **{
                    "source": "aws.s3",
                    "detail-type": "Object Created",
                    "resources": ["arn:aws:s3:::my-bucket"],
                    "detail": {"bucket": {"name": "my-bucket"}},
                }
            )
        )
    )
    assert (ev.source, ev.subject, ev.type, ev.platform, ev.status) == (
        "aws.s3/eu-west-1/123456789012",
        "my-bucket",
        "ml.resource.status_changed",
        "sagemaker",
        None,
    )


def test_subject_fallbacks_from_detail() -> None:
    """Without resources the subject comes from the ARN field, then <kind>/<name> from the name fields."""
    ev = one(
        orjson.dumps(
            _eventbridge(
                resources=[],
                detail={
                    "TrainingJobArn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/from-arn",
                    "TrainingJobName": "from-name",
                    "TrainingJobStatus": "Completed",
                },
            )
        )
    )
    assert ev.subject == "training-job/from-arn"
    ev = one(orjson.dumps(_eventbridge(resources=[], detail={"TrainingJobName": "tj2"})))
    assert (ev.subject, ev.status) == ("training-job/tj2", "unknown")
    ev = one(
        orjson.dumps(
            _eventbridge(
                **{
                    "detail-type": "SageMaker Model Package State Change",
                    "resources": [],
                    "detail": {
                        "ModelPackageGroupName": "grp",
                        "ModelPackageVersion": 3,
                        "ModelPackageStatus": "Pending",
                    },
                }
            )
        )
    )
    assert (ev.subject, ev.status, ev.type) == ("model-package/grp/3", "pending", "ml.model.registered")


def test_region_and_account_fall_back_to_arn_and_source_list() -> None:
    """Missing region/account come from the first ARN; a list-valued source uses its first string."""
    ev_dict = _eventbridge(source=["aws.sagemaker"])
    del ev_dict["region"], ev_dict["account"]
    ev_dict["resources"] = ["not-an-arn", "arn:aws:sagemaker:ap-south-1:999:endpoint/e"]
    ev = one(orjson.dumps(ev_dict))
    assert (ev.source, ev.subject) == ("aws.sagemaker/ap-south-1/999", "endpoint/e")


def test_epoch_millis_time_and_offsets() -> None:
    """EventBridge epoch-millis string times and Event Grid offset times both become canonical UTC."""
    assert one(orjson.dumps(_eventbridge(time="1583831889050"))).time == "2020-03-10T09:18:09.050000Z"
    base = _objs("azureml_eventgrid")[1]
    ev = one(orjson.dumps(dict(base, eventTime="2019-07-04T02:00:00.5+02:00")))
    assert ev.time == "2019-07-04T00:00:00.500000Z"


def test_cloudevent_extensions_and_passthrough_is_idempotent() -> None:
    """Extra CloudEvents attributes go to extensions, and re-normalizing our own output changes nothing."""
    ce = dict(_objs("azureml_cloudevents")[4], traceparent="00-1-2-01", comexampleext=5, dataschema="s://x")
    ev = one(orjson.dumps(ce))
    assert ev.extensions == {"traceparent": "00-1-2-01", "comexampleext": 5, "dataschema": "s://x"}
    again = one(ev.to_json())
    assert again == ev
    sm = one(corpus_lines("sagemaker")[0])
    assert one(sm.to_json()) == sm


def test_cloudevent_without_specversion_is_rejected() -> None:
    """An object with type/source/id/time but no specversion is not taken as CloudEvents 1.0: it is an error."""
    ce = dict(_objs("azureml_cloudevents")[2])
    del ce["specversion"]
    with pytest.raises(NormalizeError, match=r"missing required field 'specversion'"):
        normalize(RawMessage(body=orjson.dumps(ce)))


def test_azure_run_status_any_case() -> None:
    """RunStatusChanged maps data.runStatus in any case; a missing runStatus is unknown."""
    base = _objs("azureml_eventgrid")[4]
    cases = {
        "Failed": "failed",
        "failed": "failed",
        "Running": "running",
        "Completed": "completed",
        "Canceled": "stopped",
        "CancelRequested": "stopping",
        "NotStarted": "pending",
        "Paused": "unknown",
    }
    for raw, expected in cases.items():
        ev = one(orjson.dumps(dict(base, data=dict(base["data"], runStatus=raw))))
        assert ev.status == expected, raw
    data = dict(base["data"])
    del data["runStatus"]
    assert one(orjson.dumps(dict(base, data=data))).status == "unknown"


def test_payload_sequencer_wins_over_time() -> None:
    """A sequencer field in data/detail is the explicit sequence."""
    ev = one(orjson.dumps(_eventbridge(detail={"TrainingJobStatus": "Completed", "sequencer": "0055AED6DC"})))
    assert ev.sequence == "s:~0055AED6DC"
    ev = one(orjson.dumps(_eventbridge(detail={"TrainingJobStatus": "Completed", "sequencer": 7})))
    assert ev.sequence == "s:00000000000000000007"


def test_last_modified_time_refines_sequence() -> None:
    """LastModifiedTime within one second of the event time refines the time part of the sequence."""
    ev = one(
        orjson.dumps(
            _eventbridge(detail={"TrainingJobStatus": "Completed", "LastModifiedTime": 1704164645250.0})
        )
    )
    assert ev.time == "2024-01-02T03:04:05.000000Z"
    assert ev.sequence == "t:2024-01-02T03:04:05.250000Z:5"
