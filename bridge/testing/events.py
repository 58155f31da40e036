"""Build canonical events directly (without a normalizer), for tests of routes and stages."""

from __future__ import annotations

from typing import Any

from bridge.envelope import JOB_STATUS_CHANGED, CloudEvent


def make_event(
    id: str,
    subject: str = "training-job/job-1",
    sequence: str = "0",
    *,
    source: str = "aws.sagemaker/us-east-1/123456789012",
    type: str = JOB_STATUS_CHANGED,
    status: str | None = "running",
    platform: str = "sagemaker",
    time: str = "2026-01-01T00:00:00.000000Z",
    data: Any = None,
) -> CloudEvent:
    return CloudEvent(
        id=id,
        source=source,
        type=type,
        subject=subject,
        time=time,
        data=data if data is not None else {"n": id},
        platform=platform,
        origtype="SageMaker Training Job State Change",
        sequence=sequence,
        status=status,
    )


def sagemaker_training_event(
    id: str,
    job: str,
    second: int,
    status: str = "InProgress",
    account: str = "123456789012",
    region: str = "us-east-1",
) -> dict[str, Any]:
    """A raw EventBridge "SageMaker Training Job State Change" event at 2024-01-01 + ``second`` seconds."""
    minutes, sec = divmod(second, 60)
    hours, minutes = divmod(minutes, 60)
    ts = f"2024-01-01T{hours:02d}:{minutes:02d}:{sec:02d}Z"
    arn = f"arn:aws:sagemaker:{region}:{account}:training-job/{job}"
    return {
        "version": "0",
        "id": id,
        "detail-type": "SageMaker Training Job State Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": ts,
        "region": region,
        "resources": [arn],
        "detail": {
            "TrainingJobName": job,
            "TrainingJobArn": arn,
            "TrainingJobStatus": status,
            "SecondaryStatus": "Training",
            "LastModifiedTime": ts,
        },
    }


def azureml_run_event(id: str, run: str, second: int, status: str = "Running", workspace: str = "ws") -> dict[str, Any]:
    """A raw Event Grid RunStatusChanged event (Event Grid schema) at 2024-01-01 + ``second`` seconds."""
    minutes, sec = divmod(second, 60)
    hours, minutes = divmod(minutes, 60)
    return {
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/"
        + workspace,
        "subject": f"experiments/e1/runs/{run}",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": f"2024-01-01T{hours:02d}:{minutes:02d}:{sec:02d}.0000000Z",
        "id": id,
        "data": {"experimentName": "e1", "runId": run, "runStatus": status},
        "dataVersion": "",
        "metadataVersion": "1",
    }
