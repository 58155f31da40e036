"""Small helpers shared by the filter tests: compile-and-match shortcuts and canonical example events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.envelope import CloudEvent
from bridge.filters import FilterError, compile_filter


def eb(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Compile ``pattern`` as an EventBridge pattern and match ``event``."""
    return compile_filter(pattern, "eventbridge").matches(event)


def eg(spec: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Compile ``spec`` as an Event Grid filter and match ``event``."""
    return compile_filter(spec, "eventgrid").matches(event)


def eb_error(pattern: Any) -> FilterError:
    """The FilterError raised when compiling ``pattern`` as an EventBridge pattern."""
    try:
        compile_filter(pattern, "eventbridge")
    except FilterError as exc:
        return exc
    raise AssertionError(f"pattern was accepted: {pattern!r}")


def eg_error(spec: Any) -> FilterError:
    """The FilterError raised when compiling ``spec`` as an Event Grid filter."""
    try:
        compile_filter(spec, "eventgrid")
    except FilterError as exc:
        return exc
    raise AssertionError(f"filter was accepted: {spec!r}")


def canonical(
    *,
    type_: str,
    subject: str,
    platform: str,
    origtype: str,
    status: str | None,
    data: Any,
    id_: str = "e-1",
) -> dict[str, Any]:
    """A canonical CloudEvent dict, built through the real envelope type."""
    source = (
        "aws.sagemaker/us-east-1/123456789012"
        if platform == "sagemaker"
        else "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w"
    )
    return CloudEvent(
        id=id_,
        source=source,
        type=type_,
        subject=subject,
        time="2024-05-01T10:00:00Z",
        data=data,
        platform=platform,
        origtype=origtype,
        sequence="2024-05-01T10:00:00.000000Z",
        status=status,
    ).to_dict()


SAGEMAKER_TRAINING_FAILED = canonical(
    type_="ml.job.status_changed",
    subject="training-job/kmeans-1",
    platform="sagemaker",
    origtype="SageMaker Training Job State Change",
    status="failed",
    data={
        "TrainingJobName": "kmeans-1",
        "TrainingJobStatus": "Failed",
        "FailureReason": "OOM",
        "ResourceConfig": {"InstanceCount": 3, "InstanceType": "ml.m5.xlarge"},
    },
)
SAGEMAKER_TRAINING_COMPLETED = canonical(
    type_="ml.job.status_changed",
    subject="training-job/kmeans-2",
    platform="sagemaker",
    origtype="SageMaker Training Job State Change",
    status="completed",
    data={"TrainingJobName": "kmeans-2", "TrainingJobStatus": "Completed"},
)
SAGEMAKER_PROCESSING_FAILED = canonical(
    type_="ml.job.status_changed",
    subject="processing-job/prep-1",
    platform="sagemaker",
    origtype="SageMaker Processing Job State Change",
    status="failed",
    data={"ProcessingJobName": "prep-1", "ProcessingJobStatus": "Failed"},
)
AZUREML_RUN_FAILED = canonical(
    type_="ml.job.status_changed",
    subject="experiments/0fa9dfaa/runs/AutoML_5",
    platform="azureml",
    origtype="Microsoft.MachineLearningServices.RunStatusChanged",
    status="failed",
    data={
        "experimentName": "automl",
        "runId": "AutoML_5",
        "runStatus": "failed",
        "runTags": {"owner": "ana"},
    },
)
AZUREML_MODEL_REGISTERED = canonical(
    type_="ml.model.registered",
    subject="models/sklearn_regression_model:20",
    platform="azureml",
    origtype="Microsoft.MachineLearningServices.ModelRegistered",
    status=None,
    data={
        "ModelName": "sklearn_regression_model",
        "ModelVersion": 20,
        "ModelTags": {"area": "diabetes", "type": "regression"},
    },
)

ALL_CANONICAL = {
    "sagemaker_training_failed": SAGEMAKER_TRAINING_FAILED,
    "sagemaker_training_completed": SAGEMAKER_TRAINING_COMPLETED,
    "sagemaker_processing_failed": SAGEMAKER_PROCESSING_FAILED,
    "azureml_run_failed": AZUREML_RUN_FAILED,
    "azureml_model_registered": AZUREML_MODEL_REGISTERED,
}

# Raw events as they arrive (copied from the AWS and Azure documentation examples).
RAW_SAGEMAKER = {
    "version": "0",
    "id": "844e2571-85d4-695f-b930-0153b71dcb42",
    "detail-type": "SageMaker Training Job State Change",
    "source": "aws.sagemaker",
    "account": "123456789012",
    "time": "2018-10-06T12:26:13Z",
    "region": "us-east-1",
    "resources": ["arn:aws:sagemaker:us-east-1:123456789012:training-job/kmeans-1"],
    "detail": {
        "TrainingJobName": "89c96cc8-dded-4739-afcc-6f1dc936701d",
        "TrainingJobStatus": "Completed",
        "ResourceConfig": {"InstanceType": "InstanceType", "InstanceCount": 3, "VolumeSizeInGB": 20},
        "InputDataConfig": [{"ChannelName": "Train", "ContentType": "ContentType"}],
        "SecondaryStatusTransitions": [],
        "Tags": {},
    },
}
RAW_EVENTGRID = {
    "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w",
    "subject": "models/sklearn_regression_model:20",
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "eventTime": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069631",
    "data": {
        "ModelName": "sklearn_regression_model",
        "ModelVersion": 20,
        "ModelTags": {"area": "diabetes", "type": "regression"},
        "ModelProperties": {"type": "test"},
    },
    "dataVersion": "",
    "metadataVersion": "1",
}
RAW_CLOUDEVENT = {
    "source": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w",
    "subject": "experiments/0fa9dfaa/runs/AutoML_5",
    "type": "Microsoft.MachineLearningServices.RunStatusChanged",
    "time": "2017-06-26T18:41:00.9584103Z",
    "id": "831e1650-001e-001b-66ab-eeb76e069632",
    "data": {"experimentName": "automl", "runStatus": "failed"},
    "specversion": "1.0",
}
