"""Every corpus event normalizes, matches its reviewed golden output, and has the expected key fields."""

from __future__ import annotations

import orjson
import pytest

from bridge.envelope import STATUSES
from bridge.model import RawMessage
from bridge.normalize import normalize_all
from tests.normalize.corpus_util import CORPUS_FILES, corpus_lines, golden_lines, one

AZ_TOPIC = (
    "/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}/providers/"
    "Microsoft.MachineLearningServices/workspaces/{workspace-name}"
)
RUN_SUBJECT = (
    "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
)
AZURE_EXPECTED = [
    ("ml.model.registered", "models/sklearn_regression_model:20", None, "ModelRegistered"),
    ("ml.endpoint.status_changed", "endpoints/my-sklearn-service", "running", "ModelDeployed"),
    ("ml.job.completed", RUN_SUBJECT, "completed", "RunCompleted"),
    ("ml.data.drift_detected", "datadrifts/{}/runs/{}", None, "DatasetDriftDetected"),
    ("ml.job.status_changed", RUN_SUBJECT, "failed", "RunStatusChanged"),
]
SM_US_EAST = "aws.sagemaker/us-east-1/123456789012"
SM_US_WEST = "aws.sagemaker/us-west-2/123456789012"
# (type, subject, status, source, time) per sagemaker.jsonl line.
SAGEMAKER_EXPECTED = [
    (
        "ml.job.status_changed",
        "training-job/kmeans-1",
        "completed",
        SM_US_EAST,
        "2018-10-06T12:26:13.000000Z",
    ),
    (
        "ml.job.status_changed",
        "training-job/kmeans-1",
        "completed",
        SM_US_EAST,
        "2018-10-06T12:26:13.000000Z",
    ),
    ("ml.job.status_changed", "tuningJob/x", "unknown", SM_US_EAST, "2018-10-06T12:26:13.000000Z"),
    ("ml.job.status_changed", "tuningJob/x", "unknown", SM_US_EAST, "2018-10-06T12:26:13.000000Z"),
    ("ml.job.status_changed", "tuningJob/x", "unknown", SM_US_EAST, "2020-03-10T09:18:09.050000Z"),
    ("ml.job.status_changed", "transform-job/myjob", "completed", SM_US_EAST, "2018-10-06T12:26:13.000000Z"),
    ("ml.job.status_changed", "transform-job/myjob", "completed", SM_US_EAST, "2020-03-10T09:18:09.050000Z"),
    ("ml.job.status_changed", "transform-job/myjob", "unknown", SM_US_EAST, "2018-10-06T12:26:13.000000Z"),
    (
        "ml.resource.status_changed",
        "feature-group/sample-feature-group",
        "completed",
        SM_US_EAST,
        "2021-01-26T01:22:01.000000Z",
    ),
    (
        "ml.endpoint.status_changed",
        "endpoint/myendpoint",
        "running",
        SM_US_WEST,
        "2020-03-10T09:18:09.050000Z",
    ),
    (
        "ml.model.registered",
        "model-package/versionedmp-p-idy6c3e1fiqj/2",
        "completed",
        "aws.sagemaker/us-east-2/123456789012",
        "2021-02-24T17:00:14.000000Z",
    ),
    (
        "ml.job.status_changed",
        "pipeline/myPipeline-123",
        "completed",
        SM_US_EAST,
        "2021-03-15T16:10:11.000000Z",
    ),
    (
        "ml.job.status_changed",
        "pipeline/myPipeline-123",
        "completed",
        SM_US_EAST,
        "2021-03-15T16:10:10.000000Z",
    ),
    (
        "ml.endpoint.status_changed",
        "endpoint/myendpoint",
        "running",
        SM_US_WEST,
        "2020-06-17T16:39:57.000000Z",
    ),
    (
        "ml.endpoint.status_changed",
        "endpoint/myendpoint",
        "running",
        SM_US_WEST,
        "2020-03-10T09:18:09.050000Z",
    ),
    (
        "ml.endpoint.status_changed",
        "endpoint/sample-endpoint",
        "running",
        SM_US_WEST,
        "2021-10-25T01:52:12.000000Z",
    ),
    (
        "ml.endpoint.status_changed",
        "endpoint/sample-endpoint",
        "running",
        SM_US_WEST,
        "2021-10-25T01:52:12.000000Z",
    ),
    (
        "ml.job.status_changed",
        "labeling-job/test-labeling-job",
        "completed",
        SM_US_EAST,
        "2018-10-06T12:26:13.000000Z",
    ),
    (
        "ml.job.status_changed",
        "labeling-job/test-labeling-job",
        "completed",
        "aws.sagemaker/us-east-1/111122223333",
        "2018-10-06T12:26:13.000000Z",
    ),
    (
        "ml.job.status_changed",
        "processing-job/integ-test-analytics-algo-54ee3282-5899-4aa3-afc2-7ce1d02",
        "failed",
        "aws.sagemaker/us-east-1/111122223333",
        "2019-05-31T21:49:54.000000Z",
    ),
    (
        "ml.model.registered",
        "model-package/versionedmp-p-idy6c3e1fiqj/2",
        "completed",
        "aws.sagemaker/us-east-2/111122223333",
        "2021-02-24T17:00:14.000000Z",
    ),
]


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_matches_golden(name: str) -> None:
    """Each corpus line normalizes without error to exactly its reviewed golden CloudEvent."""
    lines = corpus_lines(name)
    golden = golden_lines(name)
    assert len(lines) == len(golden) > 0
    for line, expected in zip(lines, golden, strict=True):
        events, errors = normalize_all(RawMessage(body=line))
        assert errors == []
        assert len(events) == 1
        assert orjson.loads(orjson.dumps(events[0].to_dict())) == expected


@pytest.mark.parametrize("name", ["azureml_eventgrid", "azureml_cloudevents"])
def test_azure_corpus_key_fields(name: str) -> None:
    """Azure ML events (both schemas) get the canonical type, subject as is, status, workspace source."""
    lines = corpus_lines(name)
    assert len(lines) == len(AZURE_EXPECTED)
    for line, (ctype, subject, status, short) in zip(lines, AZURE_EXPECTED, strict=True):
        ev = one(line)
        raw = orjson.loads(line)
        assert (ev.type, ev.subject, ev.status) == (ctype, subject, status)
        assert ev.source == AZ_TOPIC
        assert ev.origtype == "Microsoft.MachineLearningServices." + short
        assert ev.platform == "azureml"
        assert ev.id == "831e1650-001e-001b-66ab-eeb76e069631"
        assert ev.time == "2017-06-26T18:41:00.958410Z"
        assert ev.data == raw["data"]
        assert ev.original == raw
        assert ev.partitionkey == subject


def test_sagemaker_corpus_key_fields() -> None:
    """SageMaker events get type, ARN-derived subject, status, region/account source and UTC time."""
    lines = corpus_lines("sagemaker")
    assert len(lines) == len(SAGEMAKER_EXPECTED)
    for line, (ctype, subject, status, source, time) in zip(lines, SAGEMAKER_EXPECTED, strict=True):
        ev = one(line)
        raw = orjson.loads(line)
        assert (ev.type, ev.subject, ev.status, ev.source, ev.time) == (ctype, subject, status, source, time)
        assert ev.platform == "sagemaker"
        assert ev.origtype == raw["detail-type"]
        assert ev.id == raw["id"]
        assert ev.data == raw["detail"]
        assert ev.original == raw


def test_every_corpus_status_is_canonical() -> None:
    """Every status the corpus produces is one of the canonical values, and SecondaryStatus stays in data."""
    for name in CORPUS_FILES:
        for line in corpus_lines(name):
            ev = one(line)
            assert ev.status is None or ev.status in STATUSES
            assert "SecondaryStatus" not in ev.attributes()


def test_duplicate_source_key_is_handled() -> None:
    """The corpus model-package event repeats "source" (orjson keeps the list); the source stays canonical."""
    line = corpus_lines("sagemaker")[10]
    assert orjson.loads(line)["source"] == ["aws.sagemaker"]
    assert one(line).source == "aws.sagemaker/us-east-2/123456789012"
