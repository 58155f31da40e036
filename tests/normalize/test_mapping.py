"""The status and type tables: every documented vendor value maps, and docs/mapping.md mirrors the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.envelope import STATUSES, TERMINAL_STATUSES
from bridge.normalize.mapping import (
    DATA_ONLY_STATUS_FIELDS,
    RANK,
    SAGEMAKER_TYPES,
    STATUS_GROUPS,
    azure_spec,
    map_status,
    render_markdown,
    sagemaker_spec,
    splice,
)

REPO = Path(__file__).resolve().parents[2]
STATUS_VALUES_MD = Path(__file__).parent / "corpus" / "STATUS_VALUES.md"

# Every lifecycle status field the normalizer reads, with every value STATUS_VALUES.md lists for it.
EXPECTED: dict[str, dict[str, str]] = {
    "TrainingJobStatus": {
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
        "Deleting": "deleting",
    },
    "HyperParameterTuningJobStatus": {
        "Completed": "completed",
        "InProgress": "running",
        "Failed": "failed",
        "Stopped": "stopped",
        "Stopping": "stopping",
        "Deleting": "deleting",
        "DeleteFailed": "failed",
        "status": "unknown",
    },
    "TransformJobStatus": {
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
        "another status... GO": "unknown",
    },
    "EndpointStatus": {
        "OutOfService": "stopped",
        "Creating": "pending",
        "Updating": "running",
        "SystemUpdating": "running",
        "RollingBack": "running",
        "InService": "running",
        "Deleting": "deleting",
        "Failed": "failed",
        "UpdateRollbackFailed": "failed",
        "IN_SERVICE": "running",
        "UPDATING": "running",
        "OUT_OF_SERVICE": "stopped",
        "CREATING": "pending",
        "UPDATE_ROLLBACK_FAILED": "failed",
    },
    "ProcessingJobStatus": {
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
    },
    "FeatureGroupStatus": {
        "Creating": "pending",
        "Created": "completed",
        "CreateFailed": "failed",
        "Deleting": "deleting",
        "DeleteFailed": "failed",
        "Active": "completed",
    },
    "ModelPackageStatus": {
        "Pending": "pending",
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Deleting": "deleting",
    },
    "currentPipelineExecutionStatus": {
        "Executing": "running",
        "Succeeded": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
    },
    "currentStepStatus": {
        "Starting": "pending",
        "Executing": "running",
        "Succeeded": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
    },
    "ImageStatus": {
        "CREATING": "pending",
        "CREATED": "completed",
        "CREATE_FAILED": "failed",
        "UPDATING": "running",
        "UPDATE_FAILED": "failed",
        "DELETING": "deleting",
        "DELETE_FAILED": "failed",
        "Creating": "pending",
    },
    "ImageVersionStatus": {
        "CREATING": "pending",
        "CREATED": "completed",
        "CREATE_FAILED": "failed",
        "DELETING": "deleting",
        "DELETE_FAILED": "failed",
        "Creating": "pending",
    },
    "LabelingJobStatus": {
        "Initializing": "pending",
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
    },
    "humanLoopStatus": {
        "InProgress": "running",
        "Failed": "failed",
        "Completed": "completed",
        "Stopped": "stopped",
        "Stopping": "stopping",
    },
    "NotebookInstanceStatus": {
        "Pending": "pending",
        "InService": "running",
        "Stopping": "stopping",
        "Stopped": "stopped",
        "Failed": "failed",
        "Deleting": "deleting",
        "Updating": "running",
    },
    "ClusterStatus": {
        "Creating": "pending",
        "Deleting": "deleting",
        "Failed": "failed",
        "InService": "running",
        "RollingBack": "running",
        "SystemUpdating": "running",
        "Updating": "running",
    },
    "AlgorithmStatus": {
        "Pending": "pending",
        "InProgress": "running",
        "Completed": "completed",
        "Failed": "failed",
        "Deleting": "deleting",
    },
    "ModelCardExportJobStatus": {"InProgress": "running", "Completed": "completed", "Failed": "failed"},
    "MonitoringScheduleStatus": {
        "Pending": "pending",
        "Failed": "failed",
        "Scheduled": "running",
        "Stopped": "stopped",
    },
    # API enums listed without an EventBridge detail-type: still mapped, should an event carry them.
    "ExecutionStatus": {
        "Pending": "pending",
        "Completed": "completed",
        "CompletedWithViolations": "completed",
        "InProgress": "running",
        "Failed": "failed",
        "Stopping": "stopping",
        "Stopped": "stopped",
    },
    "RecommendationJobStatus": {
        "PENDING": "pending",
        "IN_PROGRESS": "running",
        "COMPLETED": "completed",
        "FAILED": "failed",
        "STOPPING": "stopping",
        "STOPPED": "stopped",
        "DELETING": "deleting",
        "DELETED": "deleted",
    },
    "runStatus": {
        "failed": "failed",
        "Failed": "failed",
        "Running": "running",
        "Completed": "completed",
        "Canceled": "stopped",
        "Cancelled": "stopped",
        "CancelRequested": "stopping",
        "NotStarted": "pending",
        "Queued": "pending",
        "Preparing": "pending",
        "Provisioning": "pending",
        "Starting": "pending",
        "Finalizing": "running",
        "Unapproved": "pending",
        "NotResponding": "unknown",
        "Paused": "unknown",
    },
}
PLACEHOLDERS = {"status", "another status... GO", "NotResponding", "Paused"}


@pytest.mark.parametrize("field", sorted(EXPECTED))
def test_status_values_map(field: str) -> None:
    """Each documented value of each status field maps to the canonical status chosen for it."""
    for raw, expected in EXPECTED[field].items():
        assert map_status(raw) == expected, (field, raw)
        assert expected in STATUSES
        if raw not in PLACEHOLDERS:
            assert expected != "unknown", (field, raw)


def _md_values(cell: str) -> list[str]:
    for stop in (" (", ";", ". "):
        cell = cell.split(stop, 1)[0]
    cell = re.sub(r"^(API enum|API|Enum|ClusterStatus):\s*", "", cell.strip())
    return [v.strip().rstrip(".") for v in cell.split(",") if v.strip()]


def test_every_status_value_in_status_values_md_is_covered() -> None:
    """Every value STATUS_VALUES.md lists for a lifecycle status field we read is pinned in EXPECTED."""
    text = STATUS_VALUES_MD.read_text()
    seen: dict[str, list[str]] = {}
    for row in text.splitlines():
        cells = [c.strip() for c in row.split("|")]
        if len(cells) < 5 or not cells[2].startswith("`"):
            continue
        field = cells[2].split("`")[1]
        if field in EXPECTED and not cells[3].startswith("Same as above"):
            seen.setdefault(field, []).extend(_md_values(cells[3]))
    for line in text.splitlines():
        if line.startswith("- "):
            for match in re.finditer(r"(\w+Status)\)?(?: \([^)]*\))? = ([^.]+)", line):
                seen.setdefault(match.group(1), []).extend(v.strip() for v in match.group(2).split(","))
    assert {
        "TrainingJobStatus",
        "EndpointStatus",
        "ClusterStatus",
        "humanLoopStatus",
        "AlgorithmStatus",
        "RecommendationJobStatus",
        "ExecutionStatus",
        "ImageStatus",
    } <= set(seen)
    for field, values in seen.items():
        if field in ("ModelCardStatus", "ModelApprovalStatus"):
            continue
        assert field in EXPECTED, field
        for value in values:
            assert value in EXPECTED[field], (field, value)
            assert map_status(value) != "unknown", (field, value)


def test_status_normalization_ignores_case_and_separators() -> None:
    """IN_SERVICE, InService, in-service and "in service" are one value; non-strings are unknown."""
    for raw in ("IN_SERVICE", "InService", "inservice", "in-service", "In Service"):
        assert map_status(raw) == "running"
    assert map_status(None) == "unknown"
    assert map_status(3) == "unknown"
    assert map_status("Active") == "completed"


def test_rank_puts_terminal_after_non_terminal() -> None:
    """Every terminal status ranks above every non-terminal one; ranks are single digits."""
    non_terminal = STATUSES - TERMINAL_STATUSES
    assert min(RANK[s] for s in TERMINAL_STATUSES) > max(RANK[s] for s in non_terminal)
    assert set(RANK) == set(STATUSES) | {None}
    assert all(0 <= r <= 9 for r in RANK.values())
    assert {c for c, _ in STATUS_GROUPS} | {"unknown"} == set(STATUSES)


def test_type_tables() -> None:
    """Detail-type and Azure type lookups follow the canonical types of docs/design.md ("Canonical envelope"), both
    endpoint spellings included."""
    assert sagemaker_spec("SageMakerEndpointStateChange") == sagemaker_spec("SageMaker Endpoint State Change")
    assert sagemaker_spec("sagemaker endpoint state change") is not None
    assert sagemaker_spec("Nope") is None
    assert azure_spec("microsoft.machinelearningservices.runcompleted").type == "ml.job.completed"
    jobs = {k for k, v in SAGEMAKER_TYPES.items() if v.type == "ml.job.status_changed"}
    assert len(jobs) == 7
    for spec in SAGEMAKER_TYPES.values():
        assert spec.status_field not in DATA_ONLY_STATUS_FIELDS


def test_docs_mapping_md_is_in_sync() -> None:
    """docs/mapping.md embeds exactly the tables rendered from the code (regenerate when this fails)."""
    doc = (REPO / "docs" / "mapping.md").read_text()
    assert splice(doc) == doc
    assert render_markdown() in doc
