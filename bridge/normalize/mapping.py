"""The mapping tables: vendor event types to canonical types, vendor status values to canonical statuses.

This module is the one place of truth; ``docs/mapping.md`` embeds ``render_markdown()`` between markers
(regenerate with ``python -m bridge.normalize.mapping docs/mapping.md``; a test fails when they drift).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final, NamedTuple

from bridge.envelope import (
    DATA_DRIFT_DETECTED,
    ENDPOINT_STATUS_CHANGED,
    JOB_COMPLETED,
    JOB_STATUS_CHANGED,
    MODEL_REGISTERED,
    RESOURCE_STATUS_CHANGED,
)

UNKNOWN: Final = "unknown"

# Canonical status <- vendor status values (Azure ML run statuses and every SageMaker status field used).
# Lookup key: the value lower-cased without "_", "-" and spaces, so IN_SERVICE, InService and in-service
# are one value. Anything not listed maps to "unknown" (placeholders like "status" included).
STATUS_GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("pending", ("Pending", "Creating", "Starting", "Initializing", "NotStarted", "Queued", "Preparing",
                 "Provisioning", "Unapproved")),
    ("running", ("InProgress", "Executing", "Running", "InService", "Updating", "SystemUpdating",
                 "RollingBack", "Scheduled", "Finalizing")),
    ("stopping", ("Stopping", "CancelRequested")),
    ("completed", ("Completed", "Succeeded", "Created", "Active", "CompletedWithViolations")),
    ("failed", ("Failed", "CreateFailed", "DeleteFailed", "UpdateFailed", "UpdateRollbackFailed")),
    ("stopped", ("Stopped", "Canceled", "Cancelled", "OutOfService")),
    ("deleting", ("Deleting",)),
    ("deleted", ("Deleted",)),
)


def status_key(value: str) -> str:
    """The lookup key of a vendor status value: lower case, without ``_``, ``-`` and spaces."""
    return value.lower().replace("_", "").replace("-", "").replace(" ", "")


STATUS_BY_KEY: Final[dict[str, str]] = {
    status_key(raw): canonical for canonical, raws in STATUS_GROUPS for raw in raws
}
# Exact raw spellings seen in practice, so the common case is one dict hit with no string work.
_STATUS_EXACT: Final[dict[str, str]] = {raw: canonical for canonical, raws in STATUS_GROUPS for raw in raws}


def map_status(value: object) -> str:
    """The canonical status of a vendor status value; ``"unknown"`` for anything unrecognised."""
    if type(value) is not str:
        return UNKNOWN
    hit = _STATUS_EXACT.get(value)
    if hit is not None:
        return hit
    return STATUS_BY_KEY.get(status_key(value), UNKNOWN)


# Lifecycle rank: ties at the same instant sort by it; every terminal status after every non-terminal one.
RANK: Final[dict[str | None, int]] = {
    None: 0, UNKNOWN: 0, "pending": 1, "running": 2, "stopping": 3, "deleting": 4,
    "completed": 5, "failed": 5, "stopped": 5, "deleted": 6,
}


class AzureSpec(NamedTuple):
    """How one Azure ML event type maps: canonical type, a fixed status or the ``data`` field holding it."""

    type: str
    status: str | None = None  # fixed status implied by the event type itself
    status_field: str | None = None  # data field holding a run status
    status_required: bool = False  # True: a missing status field gives "unknown" rather than no status


AZURE_PREFIX: Final = "Microsoft.MachineLearningServices."
AZURE_TYPES: Final[dict[str, AzureSpec]] = {
    AZURE_PREFIX + "RunStatusChanged": AzureSpec(JOB_STATUS_CHANGED, None, "runStatus", True),
    AZURE_PREFIX + "RunCompleted": AzureSpec(JOB_COMPLETED, "completed"),
    AZURE_PREFIX + "ModelRegistered": AzureSpec(MODEL_REGISTERED),
    AZURE_PREFIX + "ModelDeployed": AzureSpec(ENDPOINT_STATUS_CHANGED, "running"),
    AZURE_PREFIX + "DatasetDriftDetected": AzureSpec(DATA_DRIFT_DETECTED),
}
AZURE_UNKNOWN: Final = AzureSpec(RESOURCE_STATUS_CHANGED, None, "runStatus", False)
_AZURE_BY_LOWER: Final = {k.lower(): v for k, v in AZURE_TYPES.items()}


def azure_spec(event_type: str) -> AzureSpec:
    """The spec of an Azure event type (case-insensitive); unknown types get ``AZURE_UNKNOWN``."""
    spec = AZURE_TYPES.get(event_type)
    if spec is None:
        spec = _AZURE_BY_LOWER.get(event_type.lower(), AZURE_UNKNOWN)
    return spec


class SageMakerSpec(NamedTuple):
    """How one SageMaker detail-type maps: canonical type, status field, and subject fallbacks."""

    type: str
    kind: str  # resource kind, e.g. "training-job": subject "<kind>/<name>" when resources has no ARN
    status_field: str | None  # detail key of the lifecycle status; None: the type carries no status
    names: tuple[tuple[str, ...], ...] = ()  # alternatives of detail keys joined by "/" into the name
    arn_field: str | None = None  # detail key holding the resource ARN
    example: bool = True  # False: no example event published; field names assumed from the API


def _sm(type_: str, kind: str, status: str | None, names: tuple[tuple[str, ...], ...],
        arn: str | None, example: bool = True) -> SageMakerSpec:
    return SageMakerSpec(type_, kind, status, names, arn, example)


SM_PREFIX: Final = "SageMaker "
SAGEMAKER_TYPES: Final[dict[str, SageMakerSpec]] = {
    "SageMaker Training Job State Change": _sm(
        JOB_STATUS_CHANGED, "training-job", "TrainingJobStatus", (("TrainingJobName",),), "TrainingJobArn"),
    "SageMaker HyperParameter Tuning Job State Change": _sm(
        JOB_STATUS_CHANGED, "hyper-parameter-tuning-job", "HyperParameterTuningJobStatus",
        (("HyperParameterTuningJobName",),), "HyperParameterTuningJobArn"),
    "SageMaker Transform Job State Change": _sm(
        JOB_STATUS_CHANGED, "transform-job", "TransformJobStatus", (("TransformJobName",),),
        "TransformJobArn"),
    "SageMaker Processing Job State Change": _sm(
        JOB_STATUS_CHANGED, "processing-job", "ProcessingJobStatus", (("ProcessingJobName",),),
        "ProcessingJobArn"),
    "SageMaker Ground Truth Labeling Job State Change": _sm(
        JOB_STATUS_CHANGED, "labeling-job", "LabelingJobStatus", (("LabelingJobName",),), "LabelingJobArn"),
    "SageMaker Model Building Pipeline Execution Status Change": _sm(
        JOB_STATUS_CHANGED, "pipeline-execution", "currentPipelineExecutionStatus", (),
        "pipelineExecutionArn"),
    "SageMaker Model Building Pipeline Execution Step Status Change": _sm(
        JOB_STATUS_CHANGED, "pipeline-execution", "currentStepStatus", (), "pipelineExecutionArn"),
    "SageMaker Model Package State Change": _sm(
        MODEL_REGISTERED, "model-package", "ModelPackageStatus",
        (("ModelPackageGroupName", "ModelPackageVersion"), ("ModelPackageName",)), "ModelPackageArn"),
    "SageMaker Endpoint State Change": _sm(
        ENDPOINT_STATUS_CHANGED, "endpoint", "EndpointStatus", (("EndpointName",),), "EndpointArn"),
    "SageMakerEndpointStateChange": _sm(
        ENDPOINT_STATUS_CHANGED, "endpoint", "EndpointStatus", (("EndpointName",),), "EndpointArn"),
    "SageMaker Endpoint Deployment State Change": _sm(
        ENDPOINT_STATUS_CHANGED, "endpoint", "EndpointStatus", (("EndpointName",),), "EndpointArn"),
    "SageMaker Feature Group State Change": _sm(
        RESOURCE_STATUS_CHANGED, "feature-group", "FeatureGroupStatus", (("FeatureGroupName",),),
        "FeatureGroupArn"),
    "SageMaker Image State Change": _sm(
        RESOURCE_STATUS_CHANGED, "image", "ImageStatus", (("ImageName",),), "ImageArn"),
    "SageMaker Image Version State Change": _sm(
        RESOURCE_STATUS_CHANGED, "image-version", "ImageVersionStatus", (("ImageName", "Version"),),
        "ImageVersionArn"),
    "SageMaker Model Card State Change": _sm(
        RESOURCE_STATUS_CHANGED, "model-card", None, (("ModelCardName",),), "ModelCardArn"),
    "SageMaker Notebook Instance State Change": _sm(
        RESOURCE_STATUS_CHANGED, "notebook-instance", "NotebookInstanceStatus", (("NotebookInstanceName",),),
        "NotebookInstanceArn"),
    "SageMaker HyperPod Cluster State Change": _sm(
        RESOURCE_STATUS_CHANGED, "cluster", "ClusterStatus", (("ClusterName",),), "ClusterArn"),
    "SageMaker HyperPod Cluster Node Health Event": _sm(
        RESOURCE_STATUS_CHANGED, "cluster", None, (("ClusterName",),), "ClusterArn"),
    "SageMaker HyperPod Cluster Event": _sm(
        RESOURCE_STATUS_CHANGED, "cluster", None, (("ClusterName",),), "ClusterArn"),
    "SageMaker A2I HumanLoop Status Change": _sm(
        RESOURCE_STATUS_CHANGED, "human-loop", "humanLoopStatus", (("humanLoopName",),), "humanLoopArn"),
    "Amazon Augmented AI HumanLoop Status Change": _sm(
        RESOURCE_STATUS_CHANGED, "human-loop", "humanLoopStatus", (("humanLoopName",),), "humanLoopArn"),
    "SageMaker Algorithm State Change": _sm(
        RESOURCE_STATUS_CHANGED, "algorithm", "AlgorithmStatus", (("AlgorithmName",),), "AlgorithmArn",
        False),
    "SageMaker Model Card Export Job State Change": _sm(
        RESOURCE_STATUS_CHANGED, "model-card-export-job", "ModelCardExportJobStatus",
        (("ModelCardExportJobName",),), "ModelCardExportJobArn", False),
    "SageMaker Monitoring Schedule State Change": _sm(
        RESOURCE_STATUS_CHANGED, "monitoring-schedule", "MonitoringScheduleStatus",
        (("MonitoringScheduleName",),), "MonitoringScheduleArn", False),
    "SageMaker Endpoint Config State Change": _sm(
        RESOURCE_STATUS_CHANGED, "endpoint-config", None, (("EndpointConfigName",),), "EndpointConfigArn",
        False),
    "SageMaker Model State Change": _sm(
        RESOURCE_STATUS_CHANGED, "model", None, (("ModelName",),), "ModelArn", False),
    "SageMaker Notebook Lifecycle Config State Change": _sm(
        RESOURCE_STATUS_CHANGED, "notebook-instance-lifecycle-config", None,
        (("NotebookInstanceLifecycleConfigName",),), "NotebookInstanceLifecycleConfigArn", False),
}
# Status fields that stay in ``data`` only (not lifecycle statuses, or not the event's primary one).
DATA_ONLY_STATUS_FIELDS: Final = (
    "SecondaryStatus", "SecondaryStatusTransitions[].Status", "TrainingJobStatusCounters",
    "ObjectiveStatusCounters", "ProductionVariants[].VariantStatus[].Status", "OfflineStoreStatus.Status",
    "ModelApprovalStatus", "ModelLifeCycle.StageStatus", "previousPipelineExecutionStatus",
    "previousStepStatus", "ModelCardStatus", "InstanceGroups[].Status", "HealthSummary.HealthStatus",
    "EventDetails.EventLevel",
)


def detail_type_key(detail_type: str) -> str:
    """Lookup key of a detail-type: lower case without spaces (unifies the two endpoint spellings)."""
    return detail_type.lower().replace(" ", "")


_SM_BY_KEY: Final = {detail_type_key(k): v for k, v in SAGEMAKER_TYPES.items()}
_SUFFIXES: Final = (" state change", " status change", " event", " change")


def unknown_kind(detail_type: str) -> str:
    """Resource kind for an unknown detail-type: "SageMaker Foo Bar State Change" -> "foo-bar"."""
    text = detail_type.strip().lower()
    for prefix in ("amazon sagemaker ", "sagemaker "):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    for suffix in _SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    kind = "-".join(text.split())
    return kind or "resource"


def sagemaker_spec(detail_type: str) -> SageMakerSpec | None:
    """The spec of a known detail-type (exact, then case/space-insensitive); ``None`` when unknown."""
    spec = SAGEMAKER_TYPES.get(detail_type)
    if spec is None:
        spec = _SM_BY_KEY.get(detail_type_key(detail_type))
    return spec


def render_markdown() -> str:
    """The generated part of docs/mapping.md: every table above, as Markdown."""
    out = ["### Azure ML event types", "",
           "| eventType / type | canonical type | status |", "|---|---|---|"]
    for name, a in AZURE_TYPES.items():
        status = f"`{a.status}` (fixed)" if a.status else (
            f"`data.{a.status_field}` mapped" if a.status_field else "absent")
        out.append(f"| `{name}` | `{a.type}` | {status} |")
    out.append(f"| any other type | `{AZURE_UNKNOWN.type}` | `data.runStatus` mapped if present, "
               "else absent |")
    out += ["", "### SageMaker detail-types (EventBridge)", "",
            "| detail-type | canonical type | status field (`detail.`) | subject fallback kind | "
            "name fields / ARN field |", "|---|---|---|---|---|"]
    for name, s in SAGEMAKER_TYPES.items():
        names = " or ".join("+".join(n) for n in s.names) or "—"
        note = "" if s.example else " (no example event; field names assumed from the API)"
        status = f"`{s.status_field}`" if s.status_field else "absent"
        out.append(f"| `{name}`{note} | `{s.type}` | {status} | `{s.kind}` | {names} / `{s.arn_field}` |")
    out.append(f"| any other detail-type | `{RESOURCE_STATUS_CHANGED}` | first `detail` key ending in "
               "`Status` with a string value, else absent | derived from the detail-type | any "
               "`detail` key ending in `Arn` holding a SageMaker ARN |")
    out += ["", "### Status values", "",
            "Matching ignores case, `_`, `-` and spaces (`IN_SERVICE` = `InService` = `in-service`).", "",
            "| canonical status | lifecycle rank | vendor values |", "|---|---|---|"]
    for canonical, raws in STATUS_GROUPS:
        out.append(f"| `{canonical}` | {RANK[canonical]} | {', '.join(raws)} |")
    out.append(f"| `{UNKNOWN}` | {RANK[UNKNOWN]} | any other value (e.g. the doc placeholders `status`, "
               "`another status... GO`; Azure `NotResponding`, `Paused`) |")
    out.append(f"| absent | {RANK[None]} | the event type carries no lifecycle status |")
    out += ["", "Status fields kept in `data` only: " + ", ".join(f"`{f}`" for f in DATA_ONLY_STATUS_FIELDS)
            + ".", ""]
    return "\n".join(out)


BEGIN: Final = "<!-- BEGIN GENERATED: python -m bridge.normalize.mapping docs/mapping.md -->"
END: Final = "<!-- END GENERATED -->"


def splice(document: str) -> str:
    """``document`` with the text between the BEGIN/END markers replaced by ``render_markdown()``."""
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{render_markdown()}{END}{tail}"


if __name__ == "__main__":  # pragma: no cover - developer tool
    target = Path(sys.argv[1])
    target.write_text(splice(target.read_text()))
